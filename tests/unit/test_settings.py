"""Settings: validated at start, a bad value named in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.local import with_local_defaults
from runtime.settings import SettingsError, load_settings
from tests.support.processes import ROOT, child_env

PRODUCTION = {
    "CREDITFLOW_ENV": "production",
    "DATABASE_URL": "postgresql://u:p@db:5432/cf",
    "REDIS_URL": "redis://r:6379/0",
    "AUTH_JWT_SECRET": "p" * 40,
    "LEDGER_SIGNING_KEY": "hmac:" + "s" * 20,
    "PUBLIC_URL": "https://credits.example.com",
}


def test_defaults_use_embedded_sqlite_under_var_dir(tmp_path) -> None:
    settings = load_settings(DATABASE_URL="", REDIS_URL="", VAR_DIR=str(tmp_path))
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'creditflow.db'}"
    assert settings.broker_url == ""


def test_postgres_url_gets_the_psycopg3_driver() -> None:
    settings = load_settings(DATABASE_URL="postgresql://u:p@db:5432/cf")
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/cf"


def test_broker_defaults_to_redis_and_can_be_rabbitmq() -> None:
    assert load_settings(REDIS_URL="redis://r:6379/0").broker_url == "redis://r:6379/0"
    rabbit = load_settings(REDIS_URL="redis://r:6379/0", BROKER_URL="amqp://guest:guest@mq:5672//")
    assert rabbit.broker_url.startswith("amqp://")
    assert rabbit.result_backend_url == "redis://r:6379/0"


def test_production_needs_a_public_url_and_a_ledger_key_of_either_kind() -> None:
    settings = load_settings(**PRODUCTION)
    assert settings.siwe_origin == "https://credits.example.com"
    assert settings.welcome_daily_cap == 5  # a cap by default in production only
    verify_only = {"LEDGER_SIGNING_KEY": "", "LEDGER_VERIFY_KEY": "hmac:" + "k" * 20}
    api_only = load_settings(**{**PRODUCTION, **verify_only})
    assert api_only.LEDGER_SIGNING_KEY == ""
    assert load_settings(CREDITFLOW_ENV="test").welcome_daily_cap == 0
    assert load_settings(CREDITFLOW_ENV="test", WELCOME_GRANTS_PER_ADDRESS_PER_DAY=3).welcome_daily_cap == 3


def test_public_url_and_siwe_origin() -> None:
    assert load_settings(PUBLIC_URL="https://Credits.Example.com/").PUBLIC_URL == "https://credits.example.com"
    local = load_settings(PUBLIC_URL="", API_HOST="0.0.0.0", API_PORT=8100)
    assert local.siwe_origin == "http://127.0.0.1:8100"  # development: the API's own address
    assert load_settings(PUBLIC_URL="", API_HOST="::1", API_PORT=8100).public_url == "http://[::1]:8100"
    front = load_settings(PUBLIC_URL="https://api.example.com", SIWE_DOMAIN="App.Example.com:8443")
    assert front.siwe_origin == "https://app.example.com:8443"


def test_jwt_secrets_of_32_bytes_pass_and_generated_ones_are_longer(tmp_path) -> None:
    assert load_settings(AUTH_JWT_SECRET="x" * 32).AUTH_JWT_SECRET == "x" * 32
    empty = load_settings(AUTH_JWT_SECRET="", VAR_DIR=str(tmp_path))
    generated = with_local_defaults(empty, start_redis=False)
    assert len(generated.AUTH_JWT_SECRET.encode()) >= 32
    load_settings(AUTH_JWT_SECRET=generated.AUTH_JWT_SECRET)  # and it passes its own check


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DATABASE_URL": "nonsense://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"API_PORT": "99999"}, "API_PORT"),
        ({"CREDITFLOW_ENV": "staging"}, "CREDITFLOW_ENV"),
        ({"CREDITFLOW_ENV": "production", "DATABASE_URL": "sqlite:///x.db", "REDIS_URL": ""}, "REDIS_URL"),
        ({**PRODUCTION, "PUBLIC_URL": ""}, "PUBLIC_URL"),
        ({**PRODUCTION, "LEDGER_SIGNING_KEY": "", "LEDGER_VERIFY_KEY": ""}, "LEDGER_SIGNING_KEY"),
        ({"AUTH_JWT_SECRET": "x" * 31}, "AUTH_JWT_SECRET"),
        ({"AUTH_JWT_SECRET": "é" * 15}, "AUTH_JWT_SECRET"),  # 30 bytes: counted in bytes
        ({"PUBLIC_URL": "credits.example.com"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://credits.example.com/app"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://user@credits.example.com"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "ftp://credits.example.com"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://credits.example.com:99999"}, "PUBLIC_URL"),
        ({"SIWE_DOMAIN": "https://app.example.com"}, "SIWE_DOMAIN"),
        ({"SIWE_DOMAIN": "app.example.com/login"}, "SIWE_DOMAIN"),
        ({"WELCOME_GRANT_PROVIDERS": "creditflow,github"}, "WELCOME_GRANT_PROVIDERS"),
        ({"WELCOME_GRANTS_PER_ADDRESS_PER_DAY": "-1"}, "WELCOME_GRANTS_PER_ADDRESS_PER_DAY"),
        ({"LEDGER_VERIFY_KEY": "-----BEGIN PRIVATE KEY-----\nx"}, "LEDGER_VERIFY_KEY"),
        ({"FLOWER_BASIC_AUTH": "admin"}, "FLOWER_BASIC_AUTH"),
        ({"FLOWER_BASIC_AUTH": "admin:short"}, "FLOWER_BASIC_AUTH"),
        ({"FLOWER_BASIC_AUTH": "admin:long-enough-password,:nouser-password"}, "FLOWER_BASIC_AUTH"),
    ],
)
def test_bad_values_name_the_variable(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(**overrides)


def test_a_bad_setting_stops_a_command_with_one_line() -> None:
    env = child_env(DATABASE_URL="nonsense://")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("creditflow: invalid setting DATABASE_URL:")


def test_a_heartbeat_timeout_shorter_than_three_beats_is_refused() -> None:
    with pytest.raises(SettingsError, match="JOB_HEARTBEAT_TIMEOUT_S"):
        load_settings(JOB_HEARTBEAT_S=10, JOB_HEARTBEAT_TIMEOUT_S=20)


def test_loopback_fetches_are_refused_in_production() -> None:
    assert load_settings(**PRODUCTION).OUTBOUND_ALLOW_LOOPBACK is False
    with pytest.raises(SettingsError, match="OUTBOUND_ALLOW_LOOPBACK"):
        load_settings(**PRODUCTION, OUTBOUND_ALLOW_LOOPBACK=True)
    assert load_settings(OUTBOUND_ALLOW_LOOPBACK=True).OUTBOUND_ALLOW_LOOPBACK is True
