"""The operators' settings: who reads /metrics, who audits, where workers export their metrics. Part of
`runtime.settings.Settings`, which inherits them."""

from __future__ import annotations

import ipaddress
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from runtime.setting_types import MetricsToken, NetworkList


class OperatorSettings(BaseSettings):
    """Settings of the operators' tools (api/ops.py, api/auth, workers' metrics)."""

    # Who may read the API's /metrics (Flower's is behind FLOWER_BASIC_AUTH): clients in METRICS_ALLOW
    # (networks), or anyone sending `Authorization: Bearer <METRICS_TOKEN>`.
    METRICS_ALLOW: NetworkList = "127.0.0.0/8,::1/128"
    METRICS_TOKEN: MetricsToken = ""
    # A worker serves its Prometheus metrics on this port of WORKER_METRICS_HOST (0: not at all); with
    # several workers on one host give each its own (`creditflow worker --metrics-port`).
    WORKER_METRICS_PORT: int = Field(0, ge=0, le=65535)
    WORKER_METRICS_HOST: str = "127.0.0.1"
    # External ids that are auditors (like ADMIN_SUBJECTS); creditflow JWTs with roles ["auditor"] are too.
    AUDITOR_SUBJECTS: str = ""
    # Beat sends a no-op to each of CANARY_QUEUES this often; one not consumed in time marks its queue
    # stalled (orchestration/jobs/canaries.py): in /readyz's detail and creditflow_queue_consuming.
    # RabbitMQ only: declare the work queues as quorum queues (replicated; Celery 5.5+ then uses
    # per-consumer prefetch and native delayed delivery). Off by default: on a node restarted after a
    # crash, the queue depth the metrics and autoscalers read (AMQP declare-ok) stayed 0 for a quorum
    # queue in tests/integration/test_broker.py. Existing classic queues must be deleted before switching.
    BROKER_QUORUM_QUEUES: bool = False
    CANARY_INTERVAL_S: float = Field(30.0, gt=0, le=3600)
    CANARY_TIMEOUT_S: float = Field(120.0, gt=0, le=24 * 3600)
    CANARY_QUEUES: str = "critical,interactive,agents,images,local,maintenance,notify"
    # A worker its consume watchdog stopped gets this long for its warm shutdown, then is killed (its
    # supervisor starts a fresh one): on a broker link that hangs, closing the channels and sending the
    # last events can take minutes. 0: the longest hard time limit of its queues plus a minute.
    CANARY_STOP_GRACE_S: float = Field(0.0, ge=0, le=24 * 3600)

    @model_validator(mode="after")
    def _canary_waits_longer_than_its_interval(self) -> Self:
        if self.CANARY_TIMEOUT_S <= self.CANARY_INTERVAL_S:
            raise ValueError("CANARY_TIMEOUT_S must be longer than CANARY_INTERVAL_S")
        return self

    @property
    def canary_queues(self) -> tuple[str, ...]:
        """The queues beat sends a consume canary to (CANARY_QUEUES, comma-separated)."""
        return tuple(name.strip() for name in self.CANARY_QUEUES.split(",") if name.strip())

    @property
    def auditor_subjects(self) -> frozenset[str]:
        """External ids that are auditors: they read every admin view and change nothing."""
        return frozenset(part.strip() for part in self.AUDITOR_SUBJECTS.split(",") if part.strip())

    @property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks whose clients may read /metrics without METRICS_TOKEN."""
        parts = [part.strip() for part in self.METRICS_ALLOW.split(",")]
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)
