"""Long-running process commands: `api`, `worker`, `beat`, `flower`, and `dev` (all of them).

Rules these commands keep:
- Everything a process writes to disk goes under VAR_DIR (gunicorn's control socket and Prometheus
  files included), so two stacks with different VAR_DIRs on one machine never share a file.
- The API verifies ledger checkpoints but never signs them: it keeps LEDGER_VERIFY_KEY (or the
  public half of LEDGER_SIGNING_KEY, derived at start) and drops the signing key before serving.
  Only the maintenance workers (sealing) and `creditflow ledger` hold the private key.
- Flower can read every prompt and control workers: it listens beyond localhost only behind
  FLOWER_BASIC_AUTH.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import shutil
from typing import Any

from cli.logs import gunicorn_logger
from orchestration.bootstrap import check_settings
from runtime.local import with_local_defaults
from runtime.settings import Settings, SettingsError, get_settings, settings_or_exit

EXPORTED = ("REDIS_URL", "AUTH_JWT_SECRET", "LEDGER_SIGNING_KEY")
CONTROL_SOCKET = "gunicorn.ctl"


def prepare_environment(*, start_redis: bool = True) -> Settings:
    """Validated settings with development defaults filled in and exported to children."""
    given = settings_or_exit()
    try:
        check_settings(given)  # what needs an adapter to check (the HD key), before any child starts
    except SettingsError as exc:
        raise SystemExit(f"creditflow: {exc}") from None
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
    """Serve the API: gunicorn managing uvicorn workers, each the ASGI front over the Flask app (its
    requests in a pool of API_THREADS threads, its event streams as coroutines: api/asgi.py)."""
    settings = api_settings(prepare_environment())
    host, port = args.host or settings.API_HOST, args.port or settings.API_PORT
    # The app's own address (the development PUBLIC_URL) is where it really listens.
    settings = settings.model_copy(update={"API_HOST": host, "API_PORT": port})
    var_dir = settings.VAR_DIR.resolve()
    metrics_dir = var_dir / f"prometheus-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # prometheus_client picks its multiprocess value store when first imported: set this first.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from gunicorn.app.base import BaseApplication

    from api.app import create_app
    from api.asgi import create_asgi_app
    from api.http_protocol import worker_class

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": args.workers or settings.API_WORKERS,
                "worker_class": worker_class(settings),  # uvicorn with the door's limits
                "timeout": 60,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": "-" if args.access_log else None,
                "loglevel": settings.LOG_LEVEL.lower(),
                "logger_class": gunicorn_logger(settings.LOG_LEVEL),
                # gunicorn >= 25 defaults to one socket per user ($XDG_RUNTIME_DIR or ~/.gunicorn): a
                # second stack would take it over. Ours lives in VAR_DIR (`gunicornc -s` reaches it).
                "control_socket": str(var_dir / CONTROL_SOCKET),
                "control_socket_disable": not settings.API_CONTROL_SOCKET,
                "child_exit": _mark_worker_dead,
                "on_exit": lambda _server: shutil.rmtree(metrics_dir, ignore_errors=True),
            }
            for key, value in options.items():
                if value is not None and key in self.cfg.settings:  # control_socket: gunicorn >= 25
                    self.cfg.set(key, value)

        def load(self) -> Any:
            app = create_asgi_app(create_app(settings))
            # What import and start-up made lives as long as the process: out of the collector's sight,
            # a full collection walks the streams' objects only (bench/streams.py saw 170-315 ms pauses
            # of every stream at 2,000 streams, 13-189 ms once frozen).
            gc.collect()
            gc.freeze()
            return app

    Server().run()
    return 0


def api_settings(settings: Settings) -> Settings:
    """This process's settings without the ledger signing key, LEDGER_VERIFY_KEY filled in.

    The environment is changed too, so nothing in the API process (celeryconfig, a later
    get_settings()) reads the private key again, from the environment or from .env.
    """
    import ledger

    verify_key = settings.LEDGER_VERIFY_KEY
    if settings.LEDGER_SIGNING_KEY:
        derived = ledger.verifier_from_key(settings.LEDGER_SIGNING_KEY)
        if verify_key and ledger.verifier_from_key(verify_key).key_id != derived.key_id:
            raise SystemExit("creditflow: LEDGER_VERIFY_KEY is not the key of LEDGER_SIGNING_KEY")
        verify_key = verify_key or derived.public_key_pem() or settings.LEDGER_SIGNING_KEY  # hmac: itself
    os.environ["LEDGER_SIGNING_KEY"] = ""
    os.environ["LEDGER_VERIFY_KEY"] = verify_key
    get_settings.cache_clear()
    return get_settings()


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


def pool_for(queues: list[str], requested: str = "auto") -> str:
    """The Celery pool of a worker: `threads` when every queue only waits on the network, else prefork.

    A waiting job on a prefork pool holds a whole process (2 slots = 2 users streaming); CPU-bound
    work on a threads pool fights over the GIL. So one worker never mixes the two kinds of queue."""
    import celeryconfig

    io = [queue for queue in queues if queue in celeryconfig.IO_QUEUES]
    if requested == "auto":
        return "threads" if len(io) == len(queues) else "prefork"
    if requested == "threads" and len(io) != len(queues):
        cpu = ", ".join(queue for queue in queues if queue not in io)
        raise SystemExit(f"creditflow: --pool threads is for I/O queues only; {cpu} need a prefork pool")
    return requested


def run_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker consuming the given queues (a pool that scales on its own)."""
    settings = prepare_environment()
    queues = parse_queues(args.queues)
    pool = pool_for(queues, args.pool)
    if "maintenance" in queues and not settings.LEDGER_SIGNING_KEY:
        raise SystemExit("creditflow: a maintenance worker seals the ledger: it needs LEDGER_SIGNING_KEY")
    metrics_port = args.metrics_port if args.metrics_port is not None else settings.WORKER_METRICS_PORT
    if metrics_port:
        from cli import worker_metrics

        worker_metrics.prepare(settings, metrics_port)
    from workers.app import celery_app

    default = settings.WORKER_IO_CONCURRENCY if pool == "threads" else settings.WORKER_CONCURRENCY
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency or default}",
        f"--loglevel={settings.LOG_LEVEL}",
        f"--pool={pool}",
        "--events",
        # Gossip and mingle cost each worker 4 of its 10 idle broker connections (bench/worker_profile.py)
        # and mingle a second at every start; nothing here uses them: a dead worker's jobs are found by
        # their own heartbeats (the reaper), and cancels are flags, not revokes. Worker heartbeats stay on
        # (Flower, `celery inspect`).
        "--without-gossip",
        "--without-mingle",
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
    """Start Flower, the Celery monitor, on FLOWER_PORT (beyond localhost only with FLOWER_BASIC_AUTH)."""
    given = settings_or_exit()
    if not _loopback(args.address) and not given.FLOWER_BASIC_AUTH:
        raise SystemExit(
            f"creditflow: Flower shows every prompt and can stop workers; listening on {args.address} "
            "needs FLOWER_BASIC_AUTH (user:password)"
        )
    settings = prepare_environment()
    if settings.FLOWER_BASIC_AUTH:
        # Flower reads FLOWER_BASIC_AUTH itself; set here so a value from .env reaches it, never in argv (ps).
        os.environ["FLOWER_BASIC_AUTH"] = settings.FLOWER_BASIC_AUTH
    _metrics_behind_logins()
    from workers.app import celery_app

    port = args.port or settings.FLOWER_PORT
    celery_app.start(["flower", f"--port={port}", f"--address={args.address}"])
    return 0


def _metrics_behind_logins() -> None:
    """Flower serves /metrics to anyone, logins or not (its handler lacks `authenticated`): it names every
    worker and task. Give it the same check as every other page; Prometheus scrapes with `basic_auth`."""
    from flower.views import monitor
    from tornado.web import authenticated

    if not getattr(monitor.Metrics.get, "creditflow_guarded", False):
        guarded = authenticated(monitor.Metrics.get)
        guarded.creditflow_guarded = True  # type: ignore[attr-defined]
        monitor.Metrics.get = guarded  # type: ignore[method-assign]


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


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
    worker.add_argument(
        "--pool", choices=("auto", "threads", "prefork"), default="auto",
        help="auto: threads for I/O queues (interactive, agents, images), prefork otherwise",
    )
    worker.add_argument("--hostname", "-n", default=None)
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (default WORKER_METRICS_PORT)"
    )
    worker.set_defaults(handler=run_worker)

    beat = subparsers.add_parser("beat", help="run Celery beat (periodic tasks)")
    beat.set_defaults(handler=run_beat)

    flower = subparsers.add_parser("flower", help="run Flower, the Celery monitor")
    flower.add_argument("--port", type=int, default=None)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(handler=run_flower)
