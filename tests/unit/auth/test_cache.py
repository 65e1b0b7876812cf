"""Process-local caches: verified tokens only inside their validity window, bounded LRU."""

from __future__ import annotations

from datetime import UTC, datetime

from api.auth.cache import TokenCache, UserCache
from api.auth.principal import Principal
from orchestration.accounts.users import User


def test_tokens_are_served_only_while_valid() -> None:
    cache = TokenCache()
    principal = Principal("jwt", "creditflow", "alice", valid_from=100.0, valid_until=200.0)
    cache.put("t", principal)
    assert cache.get("t", 150.0) == principal
    assert cache.get("t", 99.0) is None  # not yet valid: dropped
    cache.put("t", principal)
    assert cache.get("t", 200.0) is None  # expired: dropped
    assert cache.get("t", 150.0) is None


def test_api_keys_are_never_cached() -> None:
    cache = TokenCache()
    cache.put("cf_x", Principal("api_key", "api-key", secret="cf_x"))
    assert cache.get("cf_x", 0.0) is None


def test_caches_are_bounded_lru() -> None:
    cache = UserCache(size=2)
    users = [User(f"usr_{i}", f"ext-{i}", None, datetime.now(UTC)) for i in range(3)]
    cache.put(users[0])
    cache.put(users[1])
    assert cache.get("ext-0") == users[0]  # now most recently used
    cache.put(users[2])
    assert cache.get("ext-1") is None
    assert cache.get("ext-0") == users[0]
    tokens = TokenCache(size=1)
    tokens.put("a", Principal("jwt", "creditflow", "a"))
    tokens.put("b", Principal("jwt", "creditflow", "b"))
    assert tokens.get("a", 0.0) is None
    assert tokens.get("b", 0.0) is not None
