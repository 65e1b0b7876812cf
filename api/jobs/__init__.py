"""Jobs over HTTP: read, list, follow, cancel, agent tasks, diagnostic jobs and dead-letter admin; imports
orchestration.jobs/replies and api/streams, never workers."""
