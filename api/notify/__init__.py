"""`/api/v1/webhooks`: a user's webhook endpoints, their test sends, the delivery log and replays."""
