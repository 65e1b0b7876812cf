"""Image jobs: vision analyses (and image generation)."""
