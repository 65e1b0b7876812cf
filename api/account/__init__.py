"""The caller's own account over HTTP: `/me`, credits (balance, history, proofs), API keys; imports
orchestration.accounts and ledger, never another api capability package."""
