"""Chat over HTTP: models, conversations, messages answered by `chat` jobs; imports orchestration.replies,
never workers."""
