"""Property-based fuzzing (Hypothesis) of what parses outside input: webhook signatures, SIWE messages, the
outbound-URL guard and Last-Event-ID. FUZZ_EXAMPLES sets the examples per property (CI keeps it small)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI runs a small, fixed number of examples per property (derandomized, so a CI failure replays); a
# deeper local run: FUZZ_EXAMPLES=20000 pytest tests/unit/fuzz (random seeds, the example database).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    derandomize=not EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# A whole guarded request builds an httpx client and its TLS context (~0.1 s): fewer of those; the pure
# checks behind it (check_url) take FUZZ's count.
FUZZ_REQUESTS = settings(FUZZ, max_examples=EXAMPLES // 10 or 25)
