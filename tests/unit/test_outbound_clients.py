"""No module but the outbound guard may fetch a URL a user gave: every module that imports an HTTP client
is listed here with the operator-configured endpoints it talks to. A new HTTP client import fails this test
until it either goes through runtime.outbound.guarded_request or is listed with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "workers", "orchestration", "ledger", "assistant", "payments", "runtime", "cli")
HTTP_CLIENTS = {
    "httpx",
    "httpx2",
    "httpcore",
    "requests",
    "urllib.request",
    "urllib3",
    "http.client",
    "aiohttp",
    "pycurl",
    "drawbridge",
    "websockets",
}
ALLOWED = {
    "runtime/outbound.py": "the guard itself (user-given URLs: vision images, webhooks)",
    "assistant/providers/openai.py": "OPENAI_BASE_URL and the catalog's model endpoints (operator settings)",
    "assistant/agents/tools.py": "AGENT_SEARCH_URL, the operator's search service",
    "payments/paypal_gateway.py": "PAYPAL_API_BASE (operator setting)",
    "assistant/providers/images/http.py": "BFL_API_BASE, FAL_QUEUE_BASE, REPLICATE_API_BASE (operator "
    "settings) "
    "and the polling and result URLs those providers answer, never a user's",
    "assistant/providers/images/openai.py": "IMAGES_OPENAI_BASE_URL (operator setting)",
}
FETCH_CALLS = {"urlopen", "urlretrieve", "create_connection"}


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_client(name: str) -> bool:
    return any(name == client or name.startswith(client + ".") for client in HTTP_CLIENTS)


def _modules() -> dict[str, ast.AST]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[str(path.relative_to(ROOT))] = ast.parse(path.read_text(), filename=str(path))
    return found


def test_only_listed_modules_import_an_http_client() -> None:
    importers = {path for path, tree in _modules().items() if any(map(_is_client, _imports(tree)))}
    assert importers - set(ALLOWED) == set(), "fetch user-given URLs only through runtime.outbound"
    assert set(ALLOWED) <= importers, "a listed module no longer imports a client: drop it from ALLOWED"


def test_no_module_opens_urls_or_sockets_by_hand() -> None:
    offenders = []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            if name in FETCH_CALLS and path != "runtime/outbound.py":
                offenders.append(f"{path}:{node.lineno} {name}")
    assert offenders == []


def test_the_check_sees_a_client_import() -> None:
    # The check itself could fail: an unlisted module importing httpx is caught.
    tree = ast.parse("import httpx\nfrom urllib.request import urlopen\n")
    assert {name for name in _imports(tree) if _is_client(name)} == {
        "httpx",
        "urllib.request",
        "urllib.request.urlopen",
    }
