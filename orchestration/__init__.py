"""Use cases: jobs, sagas, quotes, progress, reaper; `bootstrap` is the composition root."""
