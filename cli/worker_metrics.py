"""A worker's own Prometheus endpoint: the job meters of its pool's processes (orchestration/jobs/meters.py).

Prefork children each count into prometheus_client's multiprocess files under VAR_DIR; the worker's
main process serves their sum on `--metrics-port` (or WORKER_METRICS_PORT) once the pool is up. The
directory is per port and emptied at start: counters start at zero with the process, as Prometheus
expects of a restarted target.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from runtime.settings import Settings


def prepare(settings: Settings, port: int) -> None:
    """Before anything imports prometheus_client: the multiprocess files, and the server at worker_ready."""
    folder = settings.VAR_DIR.resolve() / f"prometheus-worker-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from celery.signals import worker_ready

    def serve(**_kwargs: Any) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        from orchestration.jobs import meters

        meters.register()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=settings.WORKER_METRICS_HOST, registry=registry)

    worker_ready.connect(serve, weak=False)
