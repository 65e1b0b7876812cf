"""Process-local caches of facts that never change (verified signatures, external id -> user id).

A miss only costs the work again, so API processes stay stateless for correctness."""

from __future__ import annotations

import threading
from collections import OrderedDict

from api.auth.principal import Principal
from orchestration.accounts.users import User

MAX_ENTRIES = 20_000


class UserCache:
    """Bounded LRU of users by external id; filled only after the user's row is committed."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._users: OrderedDict[str, User] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, external_id: str) -> User | None:
        """The cached user, if any."""
        with self._lock:
            user = self._users.get(external_id)
            if user is not None:
                self._users.move_to_end(external_id)
            return user

    def put(self, user: User) -> None:
        """Remember a committed user."""
        with self._lock:
            self._users[user.external_id] = user
            self._users.move_to_end(user.external_id)
            while len(self._users) > self._size:
                self._users.popitem(last=False)


class TokenCache:
    """Bounded LRU of verified JWTs -> principal, served only inside the token's exp/nbf window."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._tokens: OrderedDict[str, Principal] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> Principal | None:
        """The principal of a token verified before, while it is still valid."""
        with self._lock:
            principal = self._tokens.get(token)
            if principal is None:
                return None
            if not principal.valid_from <= now < principal.valid_until:
                del self._tokens[token]
                return None
            self._tokens.move_to_end(token)
            return principal

    def put(self, token: str, principal: Principal) -> None:
        """Remember a verified token (never an API key: revocation must bite at once)."""
        if principal.kind == "api_key":
            return
        with self._lock:
            self._tokens[token] = principal
            while len(self._tokens) > self._size:
                self._tokens.popitem(last=False)
