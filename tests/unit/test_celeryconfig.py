"""The queue table of DESIGN.md and the Celery settings the pitfalls call for."""

from __future__ import annotations

import pytest
from celery import Celery

import celeryconfig
import workers.maintenance
import workers.notify  # (the outbox sweep)
import workers.payments  # noqa: F401  (the reconciler, scanner and auto top-up beat tasks)
from workers.app import celery_app, queue_task


def test_queue_table_matches_the_design() -> None:
    assert set(celeryconfig.QUEUES) == {
        "critical", "interactive", "agents", "images", "local", "maintenance", "notify"
    }
    assert set(celeryconfig.IO_QUEUES) == {"interactive", "agents", "images", "notify"}
    assert {queue.name for queue in celeryconfig.task_queues} == set(celeryconfig.QUEUES)


def test_visibility_timeout_outlasts_every_time_limit() -> None:
    longest = max(hard for _soft, hard in celeryconfig.QUEUE_LIMITS.values())
    assert celeryconfig.broker_transport_options["visibility_timeout"] > longest
    assert celeryconfig.result_backend_transport_options["visibility_timeout"] > longest
    for task in celery_app.tasks.values():
        if task.name.startswith("creditflow."):
            assert (task.time_limit or 0) < celeryconfig.VISIBILITY_TIMEOUT_S, task.name


def test_money_safe_delivery_settings() -> None:
    assert celeryconfig.task_acks_late is True
    assert celeryconfig.task_reject_on_worker_lost is True
    assert celeryconfig.worker_prefetch_multiplier == 1
    assert celeryconfig.accept_content == ["json"]
    assert celeryconfig.worker_send_task_events is True


@pytest.mark.parametrize("queue", celeryconfig.QUEUES)
def test_tasks_are_routed_by_name_to_their_queue(queue: str) -> None:
    app = Celery("routing")
    app.config_from_object(celeryconfig)
    route = app.amqp.router.route({}, f"creditflow.{queue}.anything", args=(), kwargs={})
    assert route["queue"].name == queue


def test_queue_task_refuses_an_unknown_queue() -> None:
    with pytest.raises(ValueError, match="unknown queue 'gpu'"):
        queue_task("gpu")


def test_queue_task_sets_that_queues_time_limits() -> None:
    soft, hard = celeryconfig.QUEUE_LIMITS["agents"]
    task = celery_app.tasks["creditflow.agents.ping"]
    assert (task.soft_time_limit, task.time_limit) == (soft, hard)


def test_every_beat_entry_names_a_registered_task() -> None:
    for name, entry in celeryconfig.beat_schedule.items():
        assert entry["task"] in celery_app.tasks, name


def test_time_limits_come_from_one_table_in_order() -> None:
    from orchestration.bootstrap import register_kinds
    from orchestration.jobs.kinds import get_kind
    from runtime import limits
    from runtime.settings import load_settings

    settings = load_settings(INTERACTIVE_TIME_LIMIT_S=120, AGENT_TIME_LIMIT_S=900)
    for queue in celeryconfig.QUEUES:
        job = limits.queue_limit_s(queue, settings)
        soft, hard = limits.celery_limits(queue, settings)
        assert job < soft < hard < job + limits.REAPER_GRACE_S
    assert limits.job_limit_s(None, "interactive", settings) == 120  # a chat turn: its queue's limit
    assert limits.job_limit_s(10_000, "agents", settings) == 900  # never beyond the queue's
    assert limits.job_limit_s(30, "agents", settings) == 30
    register_kinds()
    assert get_kind("chat").requested_limit_s({}) is None


def test_retry_policy_is_declared_once_and_only_money_steps_dead_letter() -> None:
    import workers.jobs  # noqa: F401  (registers the saga tasks)
    from orchestration.errors import RetryableError

    run = celery_app.tasks["creditflow.interactive.run"]
    settle = celery_app.tasks["creditflow.critical.settle"]
    compensate = celery_app.tasks["creditflow.critical.compensate"]
    for task in (run, settle, compensate):
        assert task.retry_backoff is True
        assert task.retry_jitter is True
    assert run.autoretry_for == (RetryableError,)
    assert (run.dead_letter_on_failure, run.saga_run) == (False, True)
    assert settle.dead_letter_on_failure
    assert compensate.dead_letter_on_failure


def test_rabbitmqs_consumer_timeout_outlasts_the_longest_task() -> None:
    # A message held unacked past consumer_timeout closes its channel: the running task's ack is lost
    # and the message is handed out again (RabbitMQ's default, 30 minutes, cuts a 30-minute agent task).
    from pathlib import Path

    conf = (Path(celeryconfig.__file__).parent / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    setting = next(line for line in conf.splitlines() if line.startswith("consumer_timeout"))
    assert int(setting.split("=")[1]) > celeryconfig.LONGEST_TIME_LIMIT_S * 1000


def test_work_queues_are_quorum_queues_on_rabbitmq_only_when_asked() -> None:
    assert all(not q.queue_arguments for q in celeryconfig.queues_for("amqp://guest:guest@127.0.0.1:5672//"))
    on_rabbit = celeryconfig.queues_for("amqp://guest:guest@127.0.0.1:5672//", quorum=True)
    assert {queue.name for queue in on_rabbit} == set(celeryconfig.QUEUES)
    assert all(queue.queue_arguments == {"x-queue-type": "quorum"} for queue in on_rabbit)
    on_redis = celeryconfig.queues_for("redis://127.0.0.1:6379/0", quorum=True)
    assert all(not queue.queue_arguments for queue in on_redis)


def test_a_silent_broker_link_cannot_hold_a_worker_for_ever() -> None:
    # Without a socket timeout kombu's Redis reads wait for ever: a warm shutdown hung on a dead link.
    options = celeryconfig.broker_transport_options
    assert 0 < options["socket_timeout"] <= 30
    assert 0 < options["health_check_interval"] <= 30
