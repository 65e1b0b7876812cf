"""The saga message: a linear chain `run` -> `settle`, compensation linked to every step."""

from __future__ import annotations

from celery import Celery

from orchestration.jobs import sagas


def test_the_saga_is_the_message_celerys_chain_would_send() -> None:
    producer = Celery("saga-shape", set_as_current=False)
    signature = sagas.build_canvas(producer, sagas.job_saga("images"), "job-1")

    assert signature.task == "creditflow.images.run"
    assert tuple(signature.args) == ("job-1",)
    (settle,) = signature.options["chain"]
    assert settle["task"] == "creditflow.critical.settle"
    assert tuple(settle["args"]) == ("job-1",)
    for step in (signature, settle):
        (errback,) = step["options"]["link_error"]
        assert errback["task"] == "creditflow.critical.compensate"
        assert tuple(errback["args"]) == ("job-1",)
        assert errback["immutable"]

