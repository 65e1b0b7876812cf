"""The images API: image generation jobs and the images they made (served to their owners), vision
analyses."""
