"""The HTTP API: Flask app factory, blueprints under /api/v1, auth, errors, SSE."""
