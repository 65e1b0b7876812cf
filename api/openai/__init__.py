"""The OpenAI-compatible API under /openai/v1: request schemas, wire format, streamed answers; imports
orchestration.replies and api/streams, nothing of api/chat or api/jobs."""
