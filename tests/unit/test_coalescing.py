"""Coalesced token events: the first at once, a burst as one event, nothing held past its window."""

from __future__ import annotations

import threading
import time

import pytest

from orchestration.jobs.coalescing import TokenCoalescer, streaming_replies


class Events:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.published = threading.Event()

    def publish(self, text: str) -> None:
        self.texts.append(text)
        self.published.set()


def test_the_first_delta_goes_out_at_once_and_a_burst_after_it_as_one_event() -> None:
    events = Events()
    tokens = TokenCoalescer(events.publish, window_s=60.0)  # a window no test run reaches
    tokens.add("Hel")
    assert events.texts == ["Hel"]
    for piece in ("lo", ",", " wor", "ld"):
        tokens.add(piece)
    assert events.texts == ["Hel"]  # held: the window after the first event is still open
    tokens.flush()
    assert events.texts == ["Hel", "lo, world"]
    assert "".join(events.texts) == "Hello, world"


def test_text_waiting_for_its_window_is_sent_when_the_window_closes_without_another_delta() -> None:
    events = Events()
    tokens = TokenCoalescer(events.publish, window_s=0.05)
    tokens.add("a")
    events.published.clear()
    tokens.add("b")  # the model pauses after this one: the process's flusher must send it
    assert events.published.wait(timeout=5)
    assert events.texts == ["a", "b"]


def test_a_zero_window_sends_every_delta_and_empty_deltas_send_nothing() -> None:
    events = Events()
    tokens = TokenCoalescer(events.publish, window_s=0.0)
    for piece in ("x", "", "y", "z"):
        tokens.add(piece)
    tokens.flush()
    assert events.texts == ["x", "y", "z"]


def test_many_jobs_streaming_at_once_keep_each_ones_text_whole_and_in_order() -> None:
    results: dict[int, Events] = {n: Events() for n in range(20)}

    def stream(n: int) -> None:
        tokens = TokenCoalescer(results[n].publish, window_s=0.01)
        for piece in range(200):
            tokens.add(f"{n}.{piece} ")
            if piece % 50 == 0:
                time.sleep(0.02)
        tokens.flush()

    threads = [threading.Thread(target=stream, args=(n,)) for n in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for n, events in results.items():
        assert "".join(events.texts) == "".join(f"{n}.{piece} " for piece in range(200))
        assert len(events.texts) < 200  # coalesced


def test_under_load_later_tokens_wait_longer_while_a_new_replys_first_token_never_waits() -> None:
    before = streaming_replies()  # replies other tests left open in this process count too

    def coalescer(events: Events | None = None) -> TokenCoalescer:
        publish = (events or Events()).publish
        return TokenCoalescer(publish, window_s=0.025, max_window_s=0.2, streams_at_base=4 + before)

    streaming = [coalescer()]
    streaming[0].add("first")
    assert streaming[0].window_s() == 0.025  # few replies streaming: the base window
    for _ in range(15 + 3 * before):  # 16 + 4 * before streaming in all
        reply = coalescer()
        reply.add("t")
        streaming.append(reply)
    assert streaming[0].window_s() == pytest.approx(0.1)  # four times the base-load count: four windows
    newcomer_events = Events()
    newcomer = coalescer(newcomer_events)
    newcomer.add("hello")
    assert newcomer_events.texts == ["hello"]  # its first token went out at once, load or not
    for _ in range(8 * (4 + before)):
        extra = coalescer()
        extra.add("t")
        streaming.append(extra)
    assert streaming[0].window_s() == 0.2  # capped
    for reply in [*streaming, newcomer]:
        reply.close()
    assert streaming_replies() == before  # every reply ended: back to the base window
    assert streaming[0].window_s() == 0.025
    newcomer.close()  # closing twice counts once
    assert streaming_replies() == before
