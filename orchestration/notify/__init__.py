"""Notifications: low-balance crossings decided when money moves, user webhooks signed by the Standard
Webhooks scheme and their deliveries (an outbox in the database, retried on the specification's schedule),
and email."""
