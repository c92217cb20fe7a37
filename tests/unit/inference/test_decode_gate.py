"""DecodeGate: every decode thread while the model is idle, fewer while it runs; nobody is left waiting."""

from __future__ import annotations

import threading
import time

import pytest

from resnet_service.inference.decode_gate import DecodeGate


def _decode_in_thread(gate: DecodeGate, started: threading.Event, release: threading.Event) -> threading.Thread:
    def work() -> None:
        with gate.decoding():
            started.set()
            release.wait(10)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_while_the_model_is_idle_every_thread_decodes_at_once() -> None:
    gate = DecodeGate(idle_limit=2, busy_limit=1)
    release = threading.Event()
    started = [threading.Event(), threading.Event()]
    threads = [_decode_in_thread(gate, event, release) for event in started]
    assert all(event.wait(5) for event in started)
    assert gate.decoding_now == 2
    release.set()
    for thread in threads:
        thread.join(5)
    assert gate.decoding_now == 0


def test_while_the_model_runs_a_second_decode_waits_for_the_run_to_end() -> None:
    gate = DecodeGate(idle_limit=2, busy_limit=1)
    release = threading.Event()
    first, second = threading.Event(), threading.Event()
    with gate.model_running():
        _decode_in_thread(gate, first, release)
        assert first.wait(5)
        _decode_in_thread(gate, second, release)
        assert not second.wait(0.2), "a second decode ran beside the model"
    # The run ended: the held-back decode goes on at once.
    assert second.wait(5)
    release.set()


def test_a_decode_waiting_for_a_turn_gets_the_one_given_back() -> None:
    gate = DecodeGate(idle_limit=1, busy_limit=1)
    release_first, release_second = threading.Event(), threading.Event()
    first, second = threading.Event(), threading.Event()
    _decode_in_thread(gate, first, release_first)
    assert first.wait(5)
    _decode_in_thread(gate, second, release_second)
    time.sleep(0.1)
    assert not second.is_set()
    release_first.set()
    assert second.wait(5)
    release_second.set()


def test_limits_must_leave_at_least_one_decode_and_never_more_while_busy() -> None:
    with pytest.raises(ValueError):
        DecodeGate(idle_limit=2, busy_limit=0)
    with pytest.raises(ValueError):
        DecodeGate(idle_limit=1, busy_limit=2)
