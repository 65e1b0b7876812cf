"""OpenAPI links between operations (a created job to its status, events and cancel; a conversation to
its messages; a key to its revocation), so clients and Schemathesis' stateful phase follow what they make."""

from __future__ import annotations

from typing import Any

from apispec import APISpec, BasePlugin

JOB = "/api/v1/jobs/{job_id}"
CONVERSATION = "/api/v1/chat/conversations/{conversation_id}"


def _ref(path: str, method: str) -> str:
    """A JSON pointer to an operation of this document (RFC 6901: `~1` for `/`)."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


_JOB_LINKS = {
    "GetJob": {"operationRef": _ref(JOB, "get"), "parameters": {"job_id": "$response.body#/job_id"}},
    "FollowJob": {
        "operationRef": _ref(JOB + "/events", "get"),
        "parameters": {"job_id": "$response.body#/job_id"},
    },
    "CancelJob": {
        "operationRef": _ref(JOB + "/cancel", "post"),
        "parameters": {"job_id": "$response.body#/job_id"},
    },
}
# (path, method, status) -> the links of that response
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    **{
        (path, "post", "202"): _JOB_LINKS
        for path in (
            "/api/v1/diagnostics/jobs",
            "/api/v1/agent-tasks",
            "/api/v1/vision/analyses",
            CONVERSATION + "/messages",
        )
    },
    ("/api/v1/chat/conversations", "post", "201"): {
        "GetConversation": {
            "operationRef": _ref(CONVERSATION, "get"),
            "parameters": {"conversation_id": "$response.body#/id"},
        },
        "SendMessage": {
            "operationRef": _ref(CONVERSATION + "/messages", "post"),
            "parameters": {"conversation_id": "$response.body#/id"},
        },
    },
    ("/api/v1/api-keys", "post", "201"): {
        "RevokeKey": {
            "operationRef": _ref("/api/v1/api-keys/{key_id}", "delete"),
            "parameters": {"key_id": "$response.body#/id"},
        },
    },
}


class LinksPlugin(BasePlugin):
    """Adds LINKS to the responses they belong to as each path is registered."""

    def init_spec(self, spec: APISpec) -> None:
        """Remember nothing: the links are static."""
        super().init_spec(spec)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Add the links of each (path, method, status) found in LINKS."""
        for method, operation in (operations or {}).items():
            for status, response in (operation.get("responses") or {}).items():
                links = LINKS.get((path or "", method, str(status)))
                if links is not None and isinstance(response, dict):
                    response.setdefault("links", {}).update(links)


def register_links(spec: APISpec) -> None:
    """Install the plugin; call before the blueprints are registered."""
    plugin = LinksPlugin()
    plugin.init_spec(spec)
    spec.plugins = [*spec.plugins, plugin]
