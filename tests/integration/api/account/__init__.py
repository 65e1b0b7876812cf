"""The caller's own account: /me, credits, API keys."""
