"""Job kinds that answer with a model (chat turns, completions, agent tasks) and the diagnostic kind, with
their use cases; may import orchestration.jobs and assistant, never payments or api."""
