"""The web application served at `/`: its pages and assets (no build step, nothing from a CDN), the sign-in
methods it offers, and the development sign-in (embedded default secret only, never in production)."""
