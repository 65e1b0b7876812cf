"""Settings read from the environment (12-factor), validated once at start."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from runtime.rails import RailSettings
from runtime.setting_types import Authority, BasicAuthLogins, JwtSecret, Origin, ProviderList, VerifyKey

Environment = Literal["development", "test", "production"]
DEFAULT_WELCOME_CAP = 5


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


class OidcIssuer(BaseModel):
    """An OpenID Connect issuer whose ID tokens are accepted (Firebase Auth, Google, Auth0, ...)."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    jwks_refresh_cooldown_s: float = Field(30, ge=0)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        if not value or not set(value) <= allowed:
            raise ValueError(f"algorithms must be asymmetric, some of {sorted(allowed)}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("jwks_url must be an http(s) URL")
        return value


class Settings(RailSettings):
    """Every setting of creditflow; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    CREDITFLOW_ENV: Environment = "development"
    VAR_DIR: Path = Path("var")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    DATABASE_URL: str = ""
    DATABASE_POOL_SIZE: int = Field(10, ge=1, le=500)
    CHECKPOINT_POOL_SIZE: int = Field(5, ge=1, le=500)
    REDIS_URL: str = ""
    BROKER_URL: str = ""
    RESULT_BACKEND_URL: str = ""

    AUTH_JWT_SECRET: JwtSecret = ""
    LEDGER_SIGNING_KEY: str = ""

    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(8000, ge=1, le=65535)
    API_WORKERS: int = Field(2, ge=1, le=64)
    API_THREADS: int = Field(64, ge=1, le=1024)
    # The door against slow and idle clients (api/wsgi_bridge.py, api/http_protocol.py): a request's
    # headers and its body each arrive within their deadline (else 408); at most API_MAX_WAITING requests
    # wait for one of the API_THREADS (else 503); at most API_MAX_CONNECTIONS connections per process.
    API_HEADER_TIMEOUT_S: float = Field(10.0, gt=0, le=600)
    API_BODY_TIMEOUT_S: float = Field(30.0, gt=0, le=3600)
    API_MAX_WAITING: int = Field(256, ge=0, le=100_000)
    API_MAX_CONNECTIONS: int = Field(8000, ge=16, le=1_000_000)
    FLOWER_PORT: int = Field(5555, ge=1, le=65535)
    METRICS_ENABLED: bool = True

    WORKER_CONCURRENCY: int = Field(2, ge=1, le=256)
    WORKER_IO_CONCURRENCY: int = Field(200, ge=1, le=10_000)
    TOKEN_COALESCE_MS: int = Field(25, ge=0, le=1000)
    TASK_MAX_REDELIVERIES: int = Field(3, ge=0, le=100)
    WORKER_EXTRA_TASK_MODULES: str = ""
    FAULT_INJECTION_ENABLED: bool = False
    DIAGNOSTIC_JOBS_ENABLED: bool | None = None
    REAPER_INTERVAL_S: float = Field(10.0, gt=0)
    SEAL_INTERVAL_S: float = Field(5.0, gt=0)
    # Beat sends a no-op to each of CANARY_QUEUES this often; one not consumed in time marks its queue
    # stalled (orchestration/jobs/canaries.py): in /readyz's detail and creditflow_queue_consuming.
    CANARY_INTERVAL_S: float = Field(30.0, gt=0, le=3600)
    CANARY_TIMEOUT_S: float = Field(120.0, gt=0, le=24 * 3600)
    CANARY_QUEUES: str = "critical,interactive,agents,images,local,maintenance"
    JOB_QUEUE_TIMEOUT_S: int = Field(3600, ge=10)
    JOB_REENQUEUE_AFTER_S: int = Field(30, ge=1)
    REDIS_MAX_CONNECTIONS: int = Field(0, ge=0, le=100_000)
    SSE_HEARTBEAT_S: float = Field(15.0, gt=0, le=120)
    # A stream whose client stopped reading (its sends block) is closed after this long.
    SSE_SEND_TIMEOUT_S: float = Field(10.0, gt=0, le=600)
    # Time limits of the jobs on each queue (runtime/limits.py derives Celery's and the reaper's).
    INTERACTIVE_TIME_LIMIT_S: int = Field(300, ge=1, le=24 * 3600)
    AGENT_TIME_LIMIT_S: int = Field(1800, ge=1, le=24 * 3600)
    IMAGES_TIME_LIMIT_S: int = Field(600, ge=1, le=24 * 3600)
    # A running job's worker refreshes its heartbeat this often; a job whose heartbeat is older than
    # the timeout lost its worker (killed, host gone) and the reaper or a cancel ends it.
    JOB_HEARTBEAT_S: float = Field(10.0, gt=0, le=300)
    JOB_HEARTBEAT_TIMEOUT_S: float = Field(45.0, gt=0, le=3600)
    # Jobs of one user running at once on one queue; more wait (queued) until one of theirs ends.
    JOB_MAX_RUNNING_PER_USER: int = Field(8, ge=1, le=10_000)
    SSE_MAX_STREAMS_PER_USER: int = Field(16, ge=1, le=10_000)

    # Authentication (api/auth): OIDC issuers as JSON, admins by external id, leeway on exp/nbf/iat.
    OIDC_ISSUERS: list[OidcIssuer] = Field(default_factory=list)
    ADMIN_SUBJECTS: str = ""
    AUTH_LEEWAY_S: int = Field(30, ge=0, le=300)
    AUTH_TOKEN_TTL_S: int = Field(24 * 3600, ge=60)
    SIWE_DOMAIN: Authority = ""
    SIWE_CHAIN_IDS: str = "1"
    SIWE_NONCE_TTL_S: int = Field(300, ge=10, le=3600)
    TRUSTED_PROXIES: int = Field(0, ge=0, le=5)
    # Public origin, sign-up policy, keys and operator safety (api/auth, orchestration/accounts/welcome.py,
    # cli/processes.py). PUBLIC_URL is where users reach creditflow (SIWE messages must name it).
    PUBLIC_URL: Origin = ""
    WELCOME_GRANT_PROVIDERS: ProviderList = "creditflow,oidc,siwe"
    WELCOME_GRANTS_PER_ADDRESS_PER_DAY: int | None = Field(None, ge=0, le=1_000_000)
    LEDGER_VERIFY_KEY: VerifyKey = ""
    API_CONTROL_SOCKET: bool = True
    FLOWER_BASIC_AUTH: BasicAuthLogins = ""
    # Rate limits: fixed windows on REDIS_URL in the `limits` notation ("600/minute;20/second").
    RATE_LIMITS_ENABLED: bool = True
    RATE_LIMIT_USER: str = "600/minute"
    RATE_LIMIT_IP: str = "1200/minute"
    RATE_LIMIT_AUTH: str = "20/minute"
    RATE_LIMIT_JOBS: str = "60/minute"
    IDEMPOTENCY_TTL_S: int = Field(24 * 3600, ge=60)
    # Assistant (assistant/): model catalog, providers, chat turns.
    ASSISTANT_CATALOG: str = ""
    ECHO_TOKEN_DELAY_MS: int = Field(0, ge=0, le=10_000)
    OPENAI_BASE_URL: str = ""
    OPENAI_API_KEY: str = ""
    OPENAI_TIMEOUT_S: float = Field(60.0, gt=0)
    LOCAL_LLM_THREADS: int = Field(0, ge=0, le=256)
    CHAT_DEFAULT_MAX_TOKENS: int = Field(256, ge=1, le=32_768)
    MEMORY_EMBEDDINGS: bool = True
    # Agent tasks (orchestration/replies/agents.py): per-step reply bound, sandbox limits, data size,
    # web search.
    AGENT_STEP_MAX_TOKENS: int = Field(512, ge=16, le=32_768)
    AGENT_REPAIR_ATTEMPTS: int = Field(2, ge=0, le=10)
    AGENT_SANDBOX_TIME_LIMIT_S: float = Field(10.0, gt=0, le=600)
    AGENT_SANDBOX_MEMORY_MB: int = Field(256, ge=32, le=16_384)
    AGENT_DATA_MAX_BYTES: int = Field(256 * 1024, ge=1, le=10 * 1024 * 1024)
    AGENT_SEARCH_URL: str = ""
    AGENT_SEARCH_TIMEOUT_S: float = Field(10.0, gt=0, le=120)

    @field_validator("RATE_LIMIT_USER", "RATE_LIMIT_IP", "RATE_LIMIT_AUTH", "RATE_LIMIT_JOBS")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"not a rate limit such as '60/minute': {value!r}") from None
        return value

    @field_validator("SIWE_CHAIN_IDS")
    @classmethod
    def _chain_ids(cls, value: str) -> str:
        if not all(part.strip().isdigit() for part in value.split(",")):
            raise ValueError("a comma-separated list of chain ids, e.g. 1,8453")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            url.get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ValueError(f"not a database URL SQLAlchemy can use ({exc})") from None
        if url.get_backend_name() not in ("postgresql", "sqlite"):
            raise ValueError("only postgresql:// and sqlite:/// are supported")
        return url.render_as_string(hide_password=False)

    @field_validator("REDIS_URL", "BROKER_URL", "RESULT_BACKEND_URL")
    @classmethod
    def _redis_like_url(cls, value: str) -> str:
        schemes = ("redis://", "rediss://", "unix://", "amqp://", "amqps://", "pyamqp://")
        if value and not value.startswith(schemes):
            raise ValueError(f"must start with one of {', '.join(schemes)}")
        return value

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.CREDITFLOW_ENV == "production":
            for name in ("DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET", "PUBLIC_URL"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required when CREDITFLOW_ENV=production")
            if not (self.LEDGER_SIGNING_KEY or self.LEDGER_VERIFY_KEY):
                raise ValueError(
                    "LEDGER_SIGNING_KEY (workers) or LEDGER_VERIFY_KEY (API) is required "
                    "when CREDITFLOW_ENV=production"
                )
        if self.CREDITFLOW_ENV == "production" and self.WORKER_EXTRA_TASK_MODULES:
            raise ValueError("WORKER_EXTRA_TASK_MODULES is for tests; leave it empty in production")
        if self.CREDITFLOW_ENV == "production" and self.FAULT_INJECTION_ENABLED:
            raise ValueError("FAULT_INJECTION_ENABLED is for tests; it must be false in production")
        if self.JOB_HEARTBEAT_TIMEOUT_S < 3 * self.JOB_HEARTBEAT_S:
            raise ValueError("JOB_HEARTBEAT_TIMEOUT_S must be at least 3 x JOB_HEARTBEAT_S")
        if self.CANARY_TIMEOUT_S <= self.CANARY_INTERVAL_S:
            raise ValueError("CANARY_TIMEOUT_S must be longer than CANARY_INTERVAL_S")
        if self.REDIS_URL.startswith(("amqp", "pyamqp")):
            raise ValueError("REDIS_URL must be a Redis URL; put RabbitMQ in BROKER_URL")
        return self

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to an embedded SQLite file under VAR_DIR."""
        return self.DATABASE_URL or f"sqlite:///{(self.VAR_DIR / 'creditflow.db').resolve()}"

    @property
    def admin_subjects(self) -> frozenset[str]:
        """External ids (JWT `sub`, wallet address, `issuer#sub`) that are admins."""
        return frozenset(part.strip() for part in self.ADMIN_SUBJECTS.split(",") if part.strip())

    @property
    def siwe_chain_ids(self) -> frozenset[int]:
        """Chain ids a Sign-In With Ethereum message may name."""
        return frozenset(int(part) for part in self.SIWE_CHAIN_IDS.split(",") if part.strip())

    @property
    def public_url(self) -> str:
        """PUBLIC_URL, else (development and tests) the API's own address."""
        if self.PUBLIC_URL:
            return self.PUBLIC_URL
        host = "127.0.0.1" if self.API_HOST in ("0.0.0.0", "::", "") else self.API_HOST  # noqa: S104
        return f"http://[{host}]:{self.API_PORT}" if ":" in host else f"http://{host}:{self.API_PORT}"

    @property
    def siwe_origin(self) -> str:
        """The origin SIWE messages must name (domain, URI): PUBLIC_URL's, SIWE_DOMAIN as its host if set."""
        public = urlsplit(self.public_url)
        return f"{public.scheme}://{self.SIWE_DOMAIN or public.netloc}"

    @property
    def welcome_providers(self) -> frozenset[str]:
        """Identity providers whose new users get the welcome grant (creditflow, siwe, oidc, issuer URLs)."""
        return frozenset(p.strip() for p in self.WELCOME_GRANT_PROVIDERS.split(",") if p.strip())

    @property
    def welcome_daily_cap(self) -> int:
        """Granted sign-ups per client address per UTC day (0: no cap); default 5 in production, else 0."""
        if self.WELCOME_GRANTS_PER_ADDRESS_PER_DAY is None:
            return DEFAULT_WELCOME_CAP if self.CREDITFLOW_ENV == "production" else 0
        return self.WELCOME_GRANTS_PER_ADDRESS_PER_DAY

    @property
    def redis_max_connections(self) -> int:
        """Redis connections per process: REDIS_MAX_CONNECTIONS, else one per API thread or I/O worker
        slot, and spare."""
        return self.REDIS_MAX_CONNECTIONS or max(self.API_THREADS, self.WORKER_IO_CONCURRENCY) + 32

    @property
    def canary_queues(self) -> tuple[str, ...]:
        """The queues beat sends a consume canary to (CANARY_QUEUES, comma-separated)."""
        return tuple(name.strip() for name in self.CANARY_QUEUES.split(",") if name.strip())

    @property
    def diagnostic_jobs(self) -> bool:
        """Whether the `diagnostic` job kind may be created (default: not in production)."""
        if self.DIAGNOSTIC_JOBS_ENABLED is None:
            return self.CREDITFLOW_ENV != "production"
        return self.DIAGNOSTIC_JOBS_ENABLED

    @property
    def broker_url(self) -> str:
        """The Celery broker: BROKER_URL, else REDIS_URL."""
        return self.BROKER_URL or self.REDIS_URL

    @property
    def result_backend_url(self) -> str:
        """The Celery result backend: RESULT_BACKEND_URL, else REDIS_URL."""
        return self.RESULT_BACKEND_URL or self.REDIS_URL


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "settings"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {name}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings; raise SettingsError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def settings_or_exit() -> Settings:
    """Settings for an entry point: a bad value stops the process with one line."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"creditflow: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
