"""Long-running process commands: `api`, `worker`, `beat`, `flower`, and `dev` (all of them)."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

from runtime.local import with_local_defaults
from runtime.settings import Settings, get_settings, settings_or_exit

EXPORTED = ("REDIS_URL", "AUTH_JWT_SECRET", "LEDGER_SIGNING_KEY")


def prepare_environment(*, start_redis: bool = True) -> Settings:
    """Validated settings with development defaults filled in and exported to children."""
    given = settings_or_exit()
    settings = with_local_defaults(given, start_redis=start_redis)
    if settings.REDIS_URL != given.REDIS_URL:
        os.environ["CREDITFLOW_EMBEDDED_REDIS"] = "1"
    for name in EXPORTED:
        value = getattr(settings, name)
        if value:
            os.environ[name] = value
    get_settings.cache_clear()
    return get_settings()


def run_api(args: argparse.Namespace) -> int:
    """Serve the API with gunicorn (threaded workers hold SSE streams open)."""
    settings = prepare_environment()
    metrics_dir = settings.VAR_DIR.resolve() / f"prometheus-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # prometheus_client picks its multiprocess value store when first imported: set this first.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from gunicorn.app.base import BaseApplication

    from api.app import create_app
    from cli.gunicorn_problems import answer_errors_as_problems

    answer_errors_as_problems()  # a 414 or 431 from gunicorn is problem+json too

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host or settings.API_HOST}:{args.port or settings.API_PORT}",
                "workers": args.workers or settings.API_WORKERS,
                "worker_class": "gthread",
                "threads": settings.API_THREADS,
                "timeout": 60,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": "-" if args.access_log else None,
                "child_exit": _mark_worker_dead,
                "on_exit": lambda _server: shutil.rmtree(metrics_dir, ignore_errors=True),
            }
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    Server().run()
    return 0


def _mark_worker_dead(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def parse_queues(text: str) -> list[str]:
    """Split a comma-separated queue list; an unknown name stops with the known ones."""
    import celeryconfig

    queues = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in queues if name not in celeryconfig.QUEUES]
    if unknown or not queues:
        raise SystemExit(
            f"creditflow: unknown queue {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(celeryconfig.QUEUES)}"
        )
    return queues


def run_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker consuming the given queues (a pool that scales on its own)."""
    prepare_environment()
    queues = parse_queues(args.queues)
    from workers.app import celery_app

    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency or get_settings().WORKER_CONCURRENCY}",
        f"--loglevel={get_settings().LOG_LEVEL}",
        "--pool=prefork",
        "--events",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    celery_app.worker_main(argv)
    return 0


def run_beat(_args: argparse.Namespace) -> int:
    """Start Celery beat (the reaper, sealing and other schedules)."""
    settings = prepare_environment()
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    from workers.app import celery_app

    celery_app.start(["beat", f"--loglevel={settings.LOG_LEVEL}"])
    return 0


def run_flower(args: argparse.Namespace) -> int:
    """Start Flower, the Celery monitor, on FLOWER_PORT."""
    settings = prepare_environment()
    from workers.app import celery_app

    port = args.port or settings.FLOWER_PORT
    celery_app.start(["flower", f"--port={port}", f"--address={args.address}"])
    return 0


def run_dev(args: argparse.Namespace) -> int:
    """Migrate, then run API, workers for every queue, beat and Flower until Ctrl-C."""
    from cli.supervisor import run_stack

    settings = prepare_environment()
    return run_stack(settings, api_port=args.port, flower_port=args.flower_port)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the process commands."""
    dev = subparsers.add_parser("dev", help="run the whole stack in the foreground (what `make run` does)")
    dev.add_argument("--port", type=int, default=None, help="API port (default API_PORT)")
    dev.add_argument("--flower-port", type=int, default=None, help="Flower port (default FLOWER_PORT)")
    dev.set_defaults(handler=run_dev)

    api = subparsers.add_parser("api", help="serve the HTTP API with gunicorn")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=None)
    api.add_argument("--access-log", action="store_true")
    api.set_defaults(handler=run_api)

    worker = subparsers.add_parser("worker", help="run a Celery worker for some queues")
    worker.add_argument("--queues", "-Q", required=True, help="comma-separated, e.g. critical,maintenance")
    worker.add_argument("--concurrency", "-c", type=int, default=None)
    worker.add_argument("--hostname", "-n", default=None)
    worker.set_defaults(handler=run_worker)

    beat = subparsers.add_parser("beat", help="run Celery beat (periodic tasks)")
    beat.set_defaults(handler=run_beat)

    flower = subparsers.add_parser("flower", help="run Flower, the Celery monitor")
    flower.add_argument("--port", type=int, default=None)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(handler=run_flower)
