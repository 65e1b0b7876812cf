"""Accounts use cases: users (created with their ledger account), the welcome policy, API keys, idempotency
records; imports ledger and runtime only, no other orchestration capability."""
