"""Operators' views: usage and revenue reports computed from the ledger, admin look-ups, and the
hash-chained audit log of every admin action. Imports the ledger and the tables of other rooms; never api."""
