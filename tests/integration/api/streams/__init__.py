"""The API's event streams (async front and WSGI path): caps, slots, endings, quiet and stalled clients."""
