"""The job machinery every kind shares: kinds registry, create/read/cancel, sagas, dispatch, steps,
heartbeats, reaper, dead letters, progress, stream slots; imports no job kind (bootstrap registers them)
and nothing of payments."""
