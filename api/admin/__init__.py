"""Admin-only routes that belong to no capability: credit grants and ledger verification; each capability's
own admin views live in its package (api/jobs/admin.py, api/payments/admin.py)."""
