"""The worker process: several RQ workers on threads share one CPU turn and keep several provider
calls in flight; a SIGTERM lets every thread finish and leaves no worker registered; a worker that Redis
forgot registers again at its next heartbeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import django_rq
import pytest
from django.urls import reverse
from rq import Worker

from dashboard.estimates import queue_state
from dashboard.models import Task
from dashboard.services import process_campaign
from jobs.cpu_gate import cpu_released, cpu_turn, holding, waited
from jobs.reconciler import reconcile_task
from simulator import max_in_flight
from tests.conftest import start_worker_process
from tests.dashboard.pages import visible_text
from tests.factories import add_source, make_remote_recipe
from tests.jobs.images import jpeg, product_on_white
from tests.polling import wait_until


def test_one_thread_at_a_time_holds_the_cpu_turn_and_a_remote_wait_hands_it_on():
    order: list[str] = []
    waiting = threading.Event()
    second_rendered = threading.Event()

    def first() -> None:
        with cpu_turn():
            order.append("first renders")
            waiting.set()
            with cpu_released():  # a provider call: the other thread may render meanwhile
                assert second_rendered.wait(5)
                assert not holding()
            order.append("first renders again")

    def second() -> None:
        assert waiting.wait(5)
        with cpu_turn():
            assert holding()
            order.append("second renders")
            second_rendered.set()
            time.sleep(0.1)  # while this holds the turn, the first thread cannot take it back

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["first renders", "second renders", "first renders again"]
    assert not holding()


def test_a_turn_counts_the_time_its_thread_waited_for_it():
    taken = threading.Event()

    def holder() -> None:
        with cpu_turn():
            taken.set()
            time.sleep(0.2)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(5)
    with cpu_turn():
        assert 0.1 < waited() < 5
    thread.join()
    with cpu_turn():
        assert waited() < 0.05, "a new turn starts counting from zero"


def test_a_nested_turn_and_a_release_outside_a_turn_do_nothing():
    with cpu_turn():
        with cpu_turn():
            assert holding()
        assert holding()
    with cpu_released():
        assert not holding()
    with cpu_turn():  # the lock was given back: taking it again does not block
        pass


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_one_threaded_worker_process_keeps_several_provider_calls_in_flight(
    simulator, make_provider, campaign, redis_conn
):
    simulator.configure(latency_ms=300)
    removebg = make_provider("removebg", requests_per_second=50.0, concurrency=8)
    recipe = make_remote_recipe(
        "Cut-out thumbs",
        [("remove_background", {}, removebg)],
        outputs=[{"name": "thumb", "width": 120, "height": 120, "format": "jpeg"}],
    )
    for n in range(8):
        add_source(campaign, jpeg(product_on_white(240, 180, seed=n)), f"{n}.jpg")
    process_campaign(campaign, [recipe])

    worker = start_worker_process("default", env={"PIXELMILL_WORKER_THREADS": "4"})
    try:
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    reconcile_task()

    assert set(campaign.tasks.values_list("state", flat=True)) == {Task.State.SUCCEEDED}
    names = set(campaign.tasks.values_list("worker_name", flat=True))
    assert len({name.partition(".t")[0] for name in names}) == 1, f"one process ran them: {names}"
    assert len(names) > 1, "more than one of its threads took tasks"
    log = [entry for entry in simulator.log() if entry["provider"] == "removebg"]
    assert len(log) == 8
    assert max_in_flight(log, "removebg") >= 3, "one process, several calls at the provider at once"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_every_thread_of_an_idle_threaded_worker(redis_conn):
    worker = start_worker_process("default", burst=False, env={"PIXELMILL_WORKER_THREADS": "3"})
    connection = django_rq.get_connection("default")

    def registered() -> bool:
        if len(Worker.all(connection=connection)) >= 3:
            return True
        assert worker.poll() is None, "the worker process is up"
        return False

    try:
        wait_until(registered, timeout=60, interval=0.2, message="three workers registered")
        names = {w.name for w in Worker.all(connection=connection)}
        assert len({name.partition(".t")[0] for name in names}) == 1, names

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0, "idle threads notice the stop within their poll"
    finally:
        if worker.poll() is None:
            worker.kill()
    assert Worker.all(connection=connection) == [], "every thread registered its death"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_outlives_a_redis_flush_registers_again_within_a_heartbeat(redis_conn, marketer_client):
    """After FLUSHALL, RQ's own heartbeat only refreshes a timestamp: the process worked on, missing from
    rq:workers, so the system page and the estimate counted too few workers."""
    heartbeat = 2
    worker = start_worker_process(
        "control",
        "default",
        burst=False,
        env={"PIXELMILL_WORKER_THREADS": "3", "PIXELMILL_WORKER_HEARTBEAT_SECONDS": str(heartbeat)},
    )
    connection = django_rq.get_connection("default")

    def registered(count: int):
        def check() -> bool:
            assert worker.poll() is None, "the worker process is up"
            return Worker.count(connection=connection) == count and queue_state()[0] == count

        return check

    def system_page() -> str:
        return visible_text(marketer_client.get(reverse("system"), {"live": "1"}).content.decode())

    try:
        wait_until(registered(3), timeout=60, interval=0.2, message="three workers registered")
        before = {w.name: w.pid for w in Worker.all(connection=connection)}
        connection.flushall()
        assert Worker.count(connection=connection) == 0
        flushed = time.monotonic()
        wait_until(
            registered(3),
            timeout=heartbeat * 3 + 5,
            interval=0.1,
            message=lambda: f"registered again: {sorted(w.name for w in Worker.all(connection=connection))}",
        )
        back_after = time.monotonic() - flushed
        after = Worker.all(connection=connection)
        assert {w.name: w.pid for w in after} == before, "the same threads of the same process"
        assert all(w.queue_names() == ["control", "default"] and w.birth_date for w in after)
        assert "Live workers 3 threads in 1 process" in system_page()
        assert queue_state()[0] == 3, "the estimate counts them"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        finally:
            if worker.poll() is None:
                worker.kill()
    print(
        f"\n3 RQ workers of one process registered again {back_after:.1f} s after FLUSHALL (heartbeat {heartbeat} s)"
    )
    assert back_after < heartbeat * 3


HEAVY_LIBRARIES = ("numpy", "cv2", "httpx", "cryptography.hazmat.bindings._rust")


def imported_after(code: str) -> list[str]:
    """The heavy libraries a fresh process set up as a worker has imported after running `code`."""
    script = (
        "import sys, django; django.setup()\n"
        f"{code}\n"
        f"print('imported:' + ','.join(name for name in {HEAVY_LIBRARIES!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [line for line in result.stdout.splitlines() if line.startswith("imported:")]
    return [name for name in line.removeprefix("imported:").split(",") if name]


def test_a_worker_starts_without_numpy_opencv_httpx_or_cryptography_and_loads_them_when_a_job_needs_them():
    """The job modules are imported at start; the 50 MB of libraries only some steps use are not."""
    assert imported_after("from jobs.worker import warm_up; warm_up()") == []
    smart_crop = (
        "from jobs.worker import warm_up; warm_up()\n"
        "from PIL import Image\n"
        "from jobs.operations import OperationContext, build_operation\n"
        "build_operation('smart_crop', {}).apply(Image.new('RGB', (64, 48), 'red'), OperationContext.default())"
    )
    assert {"numpy", "cv2"} <= set(imported_after(smart_crop))


def test_a_forking_worker_loads_the_libraries_up_front_so_its_work_horses_do_not():
    assert set(
        imported_after("from jobs.worker import warm_up, warm_up_libraries; warm_up(); warm_up_libraries()")
    ) == {
        "numpy",
        "cv2",
        "httpx",
    }
