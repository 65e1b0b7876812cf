"""Settings read from the environment (12-factor), validated once at start."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

Environment = Literal["development", "test", "production"]


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


class Settings(BaseSettings):
    """Every setting of creditflow; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    CREDITFLOW_ENV: Environment = "development"
    VAR_DIR: Path = Path("var")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    DATABASE_URL: str = ""
    DATABASE_POOL_SIZE: int = Field(10, ge=1, le=500)
    REDIS_URL: str = ""
    BROKER_URL: str = ""
    RESULT_BACKEND_URL: str = ""

    AUTH_JWT_SECRET: str = ""
    LEDGER_SIGNING_KEY: str = ""

    API_HOST: str = "127.0.0.1"
    API_PORT: int = Field(8000, ge=1, le=65535)
    API_WORKERS: int = Field(2, ge=1, le=64)
    API_THREADS: int = Field(64, ge=1, le=1024)
    FLOWER_PORT: int = Field(5555, ge=1, le=65535)
    METRICS_ENABLED: bool = True

    WORKER_CONCURRENCY: int = Field(2, ge=1, le=256)
    TASK_MAX_REDELIVERIES: int = Field(3, ge=0, le=100)
    WORKER_EXTRA_TASK_MODULES: str = ""
    FAULT_INJECTION_ENABLED: bool = False
    DIAGNOSTIC_JOBS_ENABLED: bool | None = None
    REAPER_INTERVAL_S: float = Field(10.0, gt=0)
    SEAL_INTERVAL_S: float = Field(5.0, gt=0)
    JOB_QUEUE_TIMEOUT_S: int = Field(3600, ge=10)
    JOB_REENQUEUE_AFTER_S: int = Field(30, ge=1)
    REDIS_MAX_CONNECTIONS: int = Field(0, ge=0, le=100_000)
    SSE_HEARTBEAT_S: float = Field(15.0, gt=0, le=120)
    SSE_MAX_STREAMS_PER_USER: int = Field(16, ge=1, le=10_000)
    TASK_SOFT_TIME_LIMIT_S: int = Field(300, ge=1)
    AGENT_TIME_LIMIT_S: int = Field(1800, ge=1)

    # Authentication (api/auth): OIDC issuers as JSON, admins by external id, leeway on exp/nbf/iat.
    OIDC_ISSUERS: list[OidcIssuer] = Field(default_factory=list)
    ADMIN_SUBJECTS: str = ""
    AUTH_LEEWAY_S: int = Field(30, ge=0, le=300)
    AUTH_TOKEN_TTL_S: int = Field(24 * 3600, ge=60)
    SIWE_DOMAIN: str = ""
    SIWE_CHAIN_IDS: str = "1"
    SIWE_NONCE_TTL_S: int = Field(300, ge=10, le=3600)
    TRUSTED_PROXIES: int = Field(0, ge=0, le=5)
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
    CHAT_BUSY_WAIT_S: float = Field(120.0, ge=0)
    MEMORY_EMBEDDINGS: bool = True
    # Agent tasks (orchestration/agents.py): per-step reply bound, sandbox limits, data size, web search.
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
            for name in ("DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET", "LEDGER_SIGNING_KEY"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required when CREDITFLOW_ENV=production")
        if self.CREDITFLOW_ENV == "production" and self.WORKER_EXTRA_TASK_MODULES:
            raise ValueError("WORKER_EXTRA_TASK_MODULES is for tests; leave it empty in production")
        if self.CREDITFLOW_ENV == "production" and self.FAULT_INJECTION_ENABLED:
            raise ValueError("FAULT_INJECTION_ENABLED is for tests; it must be false in production")
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
    def redis_max_connections(self) -> int:
        """Redis connections per process: REDIS_MAX_CONNECTIONS, else one per API thread and spare."""
        return self.REDIS_MAX_CONNECTIONS or self.API_THREADS + 32

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
