"""Settings: validated at start, a bad value named in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.settings import SettingsError, load_settings
from tests.support.processes import ROOT, child_env


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


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DATABASE_URL": "nonsense://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"API_PORT": "99999"}, "API_PORT"),
        ({"CREDITFLOW_ENV": "staging"}, "CREDITFLOW_ENV"),
        ({"CREDITFLOW_ENV": "production", "DATABASE_URL": "sqlite:///x.db", "REDIS_URL": ""}, "REDIS_URL"),
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
