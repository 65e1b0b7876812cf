"""Image generation jobs: the `image` kind, its polling of a provider, and where the images are kept."""
