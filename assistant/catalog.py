"""The model catalog: a YAML file loaded into the `models` table, read back with availability."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from assistant.providers import is_available, unavailable_reason
from assistant.specs import ModelSpec
from assistant.tables import models
from runtime.settings import Settings

KINDS = ("chat", "image", "vision", "embedding")
DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog.yaml"


class CatalogError(ValueError):
    """The catalog file is not valid; the message names the model and field."""


def price_version_of(entry: Mapping[str, Any]) -> str:
    """The entry's explicit `price_version`, else a digest of its pricing (changes with any price)."""
    if entry.get("price_version"):
        return str(entry["price_version"])
    digest = hashlib.sha256(json.dumps(entry.get("pricing") or {}, sort_keys=True).encode()).hexdigest()
    return f"p-{digest[:12]}"


def _spec(entry: Mapping[str, Any]) -> ModelSpec:
    name = entry.get("id")
    if not isinstance(name, str) or not name:
        raise CatalogError("every model needs an `id`")
    if entry.get("kind") not in KINDS:
        raise CatalogError(f"model {name}: kind must be one of {', '.join(KINDS)}")
    pricing = entry.get("pricing") or {}
    for key, value in pricing.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CatalogError(f"model {name}: pricing.{key} must be a non-negative integer (micro-credits)")
    return ModelSpec(
        id=name,
        provider=str(entry.get("provider", "")),
        kind=str(entry["kind"]),
        capabilities=dict(entry.get("capabilities") or {}),
        pricing=dict(pricing),
        price_version=price_version_of(entry),
        quality=int(entry.get("quality", 0)),
        options=dict(entry.get("options") or {}),
        environments=tuple(entry.get("environments") or ()),
    )


def read_catalog(path: Path) -> list[ModelSpec]:
    """Parse and validate a catalog file."""
    document = yaml.safe_load(path.read_text()) or {}
    specs = [_spec(entry) for entry in document.get("models") or []]
    if len({spec.id for spec in specs}) != len(specs):
        raise CatalogError("model ids must be unique")
    return specs


def store_catalog(session: Connection, specs: Sequence[ModelSpec]) -> None:
    """Upsert every model (an edited price gets the new price_version; quoted jobs keep theirs)."""
    insert = pg_insert if session.dialect.name == "postgresql" else sqlite_insert
    now = datetime.now(UTC)
    for spec in specs:
        values = {
            "provider": spec.provider,
            "kind": spec.kind,
            "quality": spec.quality,
            "capabilities": dict(spec.capabilities),
            "pricing": dict(spec.pricing),
            "price_version": spec.price_version,
            "options": dict(spec.options),
            "environments": list(spec.environments),
            "updated_at": now,
        }
        statement = insert(models).values(id=spec.id, **values)
        session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=values))


_loaded: dict[str, float] = {}
_lock = threading.Lock()


def catalog_path(settings: Settings) -> Path:
    """The catalog file in use."""
    return Path(settings.ASSISTANT_CATALOG) if settings.ASSISTANT_CATALOG else DEFAULT_CATALOG


def ensure_loaded(
    transaction: Callable[[], AbstractContextManager[Connection]], settings: Settings, *, database: str
) -> None:
    """Load the catalog file into `database` (in `transaction()`) when this process has not seen its
    current version."""
    path = catalog_path(settings)
    stamp = path.stat().st_mtime
    key = f"{path}@{database}"
    with _lock:
        if _loaded.get(key) == stamp:
            return
        specs = read_catalog(path)
        with transaction() as connection:
            store_catalog(connection, specs)
        _loaded[key] = stamp


def load_models(session: Connection, settings: Settings) -> list[ModelSpec]:
    """Every model this environment lists, with its availability, ordered by id."""
    rows = session.execute(select(models).order_by(models.c.id)).all()
    specs = [
        ModelSpec(
            id=row.id,
            provider=row.provider,
            kind=row.kind,
            capabilities=row.capabilities,
            pricing=row.pricing,
            price_version=row.price_version,
            quality=row.quality,
            options=row.options,
            environments=tuple(row.environments or ()),
        )
        for row in rows
    ]
    # An image model's provider may be chosen by settings (IMAGE_PROVIDERS) over the catalog's.
    specs = [
        replace(spec, provider=settings.image_provider_of(spec.id, spec.provider))
        if spec.kind == "image"
        else spec
        for spec in specs
    ]
    listed = [spec for spec in specs if spec.listed_in(settings.CREDITFLOW_ENV)]
    return [_availability(spec, settings) for spec in listed]


def _availability(spec: ModelSpec, settings: Settings) -> ModelSpec:
    if not spec.priced:
        return replace(spec, available=False, unavailable_reason="it has no price (refused, never free)")
    if is_available(spec, settings):
        return replace(spec, available=True)
    return replace(spec, available=False, unavailable_reason=unavailable_reason(spec, settings))
