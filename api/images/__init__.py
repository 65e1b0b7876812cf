"""Image routes: vision analyses (and image generation)."""
