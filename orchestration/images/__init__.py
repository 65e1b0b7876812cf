"""Image jobs: generation (the `image` kind, its polling of a provider, where the images are kept) and
vision analyses."""
