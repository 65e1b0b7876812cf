"""Settings and connections: the one small module everything may import."""
