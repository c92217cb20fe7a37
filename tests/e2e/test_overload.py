"""Bounded work under real load: a full queue answers 503 at once, deadlines drop queued work, disconnects too."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from resnet_service import Settings
from resnet_service.web.runtime import runtime_of
from tests.conftest import start_server, stop_server, threaded_server
from tests.support.images import encode, photo
from tests.support.load import between_unloaded, holding_goodput, run_load, upload_request

JPEG = encode(photo("chelsea"), "JPEG", quality=90)
SOURCES = tuple(f"127.0.0.{host}" for host in range(2, 10))
# Under overload or a flood, the service keeps at least this share of its unloaded goodput.
GOODPUT_FLOOR = 0.8


@pytest.mark.slow
def test_eight_times_more_clients_than_places_get_200_or_503_and_goodput_holds(
    slow_model_path: Path, report_figure: Callable[[str], None]
) -> None:
    # 4 waiting + a running batch of up to 4: the service holds 8 requests; 64 clients are 8× that.
    server = start_server(slow_model_path, env={"RESNET_MAX_QUEUE": "4", "RESNET_MAX_BATCH_SIZE": "4"})
    try:
        # The clients honour Retry-After, as the 503 asks: what is measured is the service under 8× overload,
        # not how fast one process can hammer it with refused requests.
        loads = {"overloaded": lambda: run_load(server.url, JPEG, clients=64, seconds=12)}
        run = holding_goodput(lambda: between_unloaded(server.url, JPEG, loads)["overloaded"], GOODPUT_FLOOR)
        overloaded = run.load
        for unloaded in (run.before, run.after):
            assert unloaded.errors == [] and set(unloaded.statuses) == {200}, unloaded.summary()
        assert overloaded.errors == [], overloaded.errors[:5]
        assert set(overloaded.statuses) == {200, 503}, overloaded.summary()
        assert overloaded.goodput >= GOODPUT_FLOOR * run.unloaded_goodput, run.summary()
        assert httpx.get(f"{server.url}/health/ready", trust_env=False).status_code == 200
        report_figure(f"unloaded (4 clients), before and after: {run.before.summary()}; {run.after.summary()}")
        report_figure(f"overloaded (64 clients, queue 4, batch 4): {overloaded.summary()}")
        report_figure(f"goodput under overload = {run.ratio:.2f} × unloaded")
    finally:
        stop_server(server)


@pytest.mark.slow
def test_a_flood_from_many_addresses_that_ignores_retry_after_cannot_starve_the_model(
    slow_model_path: Path, report_figure: Callable[[str], None]
) -> None:
    server = start_server(slow_model_path, env={"RESNET_MAX_QUEUE": "4", "RESNET_MAX_BATCH_SIZE": "4"})
    try:
        # Each client resends the moment any answer comes back, from eight addresses, as a retry loop without
        # back-off does: refusals must cost next to nothing and must not come back thousands of times a second.
        loads = {
            "flood": lambda: run_load(
                server.url, JPEG, clients=64, seconds=12, honour_retry_after=False, sources=SOURCES
            )
        }
        run = holding_goodput(lambda: between_unloaded(server.url, JPEG, loads)["flood"], GOODPUT_FLOOR)
        flood = run.load
        assert flood.errors == [], flood.errors[:5]
        assert set(flood.statuses) <= {200, 503} and flood.statuses[503] > 0, flood.summary()
        # A refused request waited RESNET_QUEUE_WAIT_S (1 s) for a place first: 64 clients cannot cycle faster.
        assert flood.statuses[503] / flood.seconds <= 64 * 1.2, flood.summary()
        assert flood.goodput >= GOODPUT_FLOOR * run.unloaded_goodput, run.summary()
        report_figure(f"unloaded (4 clients), before and after: {run.before.summary()}; {run.after.summary()}")
        report_figure(f"flood (64 clients ignoring Retry-After, 8 addresses, queue 4): {flood.summary()}")
        report_figure(f"goodput under the flood = {run.ratio:.2f} × unloaded")
    finally:
        stop_server(server)


def test_a_request_that_finds_the_queue_full_waits_its_turn_instead_of_being_refused(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_batch_size": 1, "max_queue": 1, "queue_wait_s": 30.0})
    with threaded_server(settings) as server:
        statuses = [response.status_code for response in asyncio.run(_burst(server.url, 12))]
        assert statuses == [200] * 12
        assert runtime_of(server.app).models.default.batcher.waiting == 0


def test_with_no_queue_wait_a_full_queue_refuses_at_once_with_retry_after(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_batch_size": 1, "max_queue": 1, "queue_wait_s": 0.0})
    with threaded_server(settings) as server:
        responses = asyncio.run(_burst(server.url, 12))
        refused = [response for response in responses if response.status_code == 503]
        assert refused and {response.status_code for response in responses} == {200, 503}
        assert refused[0].json()["error"]["code"] == "overloaded"
        assert refused[0].headers["retry-after"] == "1"


async def _burst(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        return await asyncio.gather(*(http.post("/predict", files={"image": ("c.jpg", JPEG)}) for _ in range(count)))


def test_requests_past_their_deadline_get_504_and_never_reach_the_model(
    settings: Settings, slow_model_path: Path
) -> None:
    # Enough decode threads that the model, not preprocessing, is the bottleneck: requests pile up in its queue.
    limits = {"max_batch_size": 1, "request_timeout_s": 0.3, "max_queue": 64, "preprocess_threads": 4}
    settings = settings.model_copy(update={"model_path": slow_model_path, **limits})
    with threaded_server(settings) as server:
        responses = asyncio.run(_burst(server.url, 24))
        statuses = [response.status_code for response in responses]
        assert set(statuses) == {200, 504}, statuses
        late = next(response for response in responses if response.status_code == 504)
        assert late.json()["error"]["code"] == "deadline_exceeded"
        assert late.json()["error"]["request_id"] == late.headers["x-request-id"]
        # Dropped work left the model free: a new request is answered well within its 0.3 s deadline. With one
        # row per batch it also runs after any batch still computing for a caller that gave up.
        assert httpx.post(f"{server.url}/predict", files={"image": ("c.jpg", JPEG)}, trust_env=False).status_code == 200
        answered = statuses.count(200) + 1
        batcher = runtime_of(server.app).models.default.batcher
        accounting = (answered, batcher.rows_run, batcher.dropped, batcher.abandoned)
        # Queued requests whose deadline struck were skipped without costing model time...
        assert batcher.dropped >= 1, accounting
        assert batcher.rows_run + batcher.dropped <= len(responses) + 1, accounting
        # ...and every row the model did run was either answered or abandoned by a deadline striking mid-batch.
        assert batcher.rows_run == answered + batcher.abandoned, accounting
        assert batcher.waiting == 0
        # Both are exported, by the stage at which the caller gave up.
        metrics = httpx.get(f"{server.url}/metrics", trust_env=False).text
        queued = f'resnet_images_abandoned_total{{model="resnet50",stage="queued"}} {float(batcher.dropped)}'
        assert queued in metrics, metrics
        if batcher.abandoned:
            computed = f'resnet_images_abandoned_total{{model="resnet50",stage="computed"}} {float(batcher.abandoned)}'
            assert computed in metrics


def _raw_upload(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(upload_request(f"127.0.0.1:{port}", JPEG))
    return connection


def test_clients_that_disconnect_while_queued_cost_no_model_time(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_batch_size": 1})
    with threaded_server(settings) as server:
        port = int(server.url.rsplit(":", 1)[1])
        connections = [_raw_upload(port) for _ in range(12)]
        for connection in connections:
            connection.close()
        batcher = runtime_of(server.app).models.default.batcher
        deadline = time.monotonic() + 10
        # Wait for the server to settle: nothing waiting, and the one batch that may have started has finished.
        while (batcher.waiting or batcher.queued) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert batcher.waiting == 0
        assert batcher.rows_run <= 3, f"{batcher.rows_run} of 12 abandoned uploads still ran on the model"
        assert httpx.get(f"{server.url}/health/ready", trust_env=False).status_code == 200
