"""Server-Sent Events over Redis streams: the async front's stream server, frames, schemas, endings,
answers and the view-to-front protocol; imports orchestration.jobs (progress, stream slots) and
api.openai's wire format, never a capability's routes."""
