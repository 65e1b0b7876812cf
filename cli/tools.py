"""One-shot commands: `migrate` and `token`."""

from __future__ import annotations

import argparse
import time

import jwt

from runtime.db import make_engine
from runtime.local import with_local_defaults
from runtime.migrate import upgrade
from runtime.settings import settings_or_exit

JWT_ISSUER = "creditflow"


def run_migrate(args: argparse.Namespace) -> int:
    """Apply database migrations up to the given revision."""
    settings = settings_or_exit()
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine, args.revision)
    engine.dispose()
    print(f"database at {engine.url.render_as_string(hide_password=True)} migrated to {args.revision}")
    return 0


def run_token(args: argparse.Namespace) -> int:
    """Print a creditflow JWT (HS256, issuer `creditflow`) for local use."""
    settings = with_local_defaults(settings_or_exit(), start_redis=False)
    now = int(time.time())
    claims: dict[str, object] = {"iss": JWT_ISSUER, "sub": args.sub, "iat": now, "exp": now + args.ttl}
    if args.email:
        claims["email"] = args.email
    roles = [role for role, wanted in (("admin", args.admin), ("auditor", args.auditor)) if wanted]
    if roles:
        claims["roles"] = roles
    print(jwt.encode(claims, settings.AUTH_JWT_SECRET, algorithm="HS256"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the one-shot commands."""
    migrate = subparsers.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(handler=run_migrate)

    token = subparsers.add_parser("token", help="print a JWT signed with AUTH_JWT_SECRET")
    token.add_argument("--sub", required=True, help="the user's external id")
    token.add_argument("--email", default=None)
    token.add_argument("--admin", action="store_true", help="add roles: [admin]")
    token.add_argument("--auditor", action="store_true", help="add roles: [auditor] (reads admin views)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="seconds until it expires")
    token.set_defaults(handler=run_token)
