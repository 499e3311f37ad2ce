"""Chaos: real workers SIGKILLed whole and work-horses SIGKILLed alone at random moments, Redis emptied half
way, PostgreSQL restarted once; nothing is lost, nothing is done twice, everything ends.

The suite runs a small version (50 tasks, one kill of each kind, one Redis flush, short leases, the
reconciler called by the test). `make chaos` runs the long one the way production runs: 2,000 tasks,
10 kills of each kind, default leases (60 s), the reconciler on its real 30-second schedule from
`rqcron`, and a PostgreSQL restart when the database is PostgreSQL (`make chaos-postgres`). It prints:
tasks lost, duplicate outputs, tasks not terminal 15 minutes after the last fault, and the longest time
from a kill to that task ending.

    PIXELMILL_CHAOS_TASKS / _WORKERS / _WORKER_KILLS / _HORSE_KILLS   sizes
    PIXELMILL_CHAOS_REALISTIC=1                                     production timings and scheduler
    PIXELMILL_CHAOS_DB_RESTART="<command>"                           how to restart the database
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection

from dashboard.models import Output, Task
from dashboard.services import process_campaign
from jobs.reconciler import reconcile_task
from tests.conftest import child_pids, start_worker_process, worker_environment
from tests.factories import add_source
from tests.jobs.images import jpeg, photo

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
FORKING, IN_PROCESS = "jobs.worker.ForkingPixelmillWorker", "jobs.worker.PixelmillWorker"
# (name, worker class, threads): a fork per job, several jobs on threads, one job in the process.
KINDS = [("fork", FORKING, 1), ("threads", IN_PROCESS, 2), ("inproc", IN_PROCESS, 1)]
OUTPUTS_PER_TASK = 5  # the social ads pack
QUIET_AFTER_LAST_FAULT = 15 * 60


@dataclass(frozen=True)
class Plan:
    tasks: int
    workers: int
    worker_kills: int
    horse_kills: int
    realistic: bool
    db_restart: list[str] | None

    @classmethod
    def from_environment(cls) -> Plan:
        env = os.environ.get
        realistic = env("PIXELMILL_CHAOS_REALISTIC") == "1"
        return cls(
            tasks=int(env("PIXELMILL_CHAOS_TASKS", "50")),
            workers=int(env("PIXELMILL_CHAOS_WORKERS", "2")),
            worker_kills=int(env("PIXELMILL_CHAOS_WORKER_KILLS", "1")),
            horse_kills=int(env("PIXELMILL_CHAOS_HORSE_KILLS", "1")),
            realistic=realistic,
            db_restart=database_restart_command() if realistic else None,
        )


def database_restart_command() -> list[str] | None:
    """How to restart the database under test: given, or the local PostgreSQL cluster when we may."""
    given = os.environ.get("PIXELMILL_CHAOS_DB_RESTART")
    if given:
        return shlex.split(given)
    if connection.vendor != "postgresql" or os.geteuid() != 0 or not shutil.which("pg_ctlcluster"):
        return None
    if connection.settings_dict.get("HOST") not in ("127.0.0.1", "localhost", "", None):
        return None
    versions = sorted(Path("/etc/postgresql").glob("*/main"))
    if not versions:
        return None
    version = versions[-1].parent.name
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]


@dataclass
class Crew:
    """The worker processes, each named so that its running tasks can be found by `Task.worker_name`."""

    plan: Plan
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    started: int = 0

    def start(self, kind: tuple[str, str, int]) -> None:
        self.started += 1
        label, worker_class, threads = kind
        name = f"chaos-{self.started}-{label}"
        queues = ("control", "default") if self.plan.realistic else ("default",)
        self.processes[name] = start_worker_process(
            *queues,
            burst=not self.plan.realistic,
            worker_class=worker_class,
            name=name,
            env={**self.env, "PIXELMILL_WORKER_THREADS": str(threads)},
        )
        self.classes[name] = kind

    def replace_exited(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                del self.processes[name]
                self.start(self.classes[name])

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def add_sources(campaign, count: int) -> None:
    for n in range(count):
        add_source(campaign, jpeg(photo(640, 480, seed=1000 + n)), name=f"{n}.jpg")


def read_tasks(campaign) -> dict[int, tuple[str, str]]:
    """pk → (state, worker name), riding out a database that is restarting."""
    for _ in range(240):
        try:
            return {
                pk: (state, worker)
                for pk, state, worker in campaign.tasks.values_list("pk", "state", "worker_name")
            }
        except DatabaseError:
            connection.close()
            time.sleep(0.5)
    raise AssertionError("the database did not come back within two minutes")


def faults(plan: Plan, rng: random.Random) -> list[tuple[float, str]]:
    """(share of tasks done, fault) in the order they strike."""
    events = [(rng.uniform(0.05, 0.9), "worker") for _ in range(plan.worker_kills)]
    events += [(rng.uniform(0.05, 0.9), "horse") for _ in range(plan.horse_kills)]
    events.append((0.5, "flush"))
    if plan.db_restart:
        events.append((0.7, "database"))
    return sorted(events)


def test_kills_a_redis_flush_and_a_database_restart_lose_nothing(
    campaign, ready_recipes, redis_conn, settings, capsys
):
    plan = Plan.from_environment()
    env: dict[str, str] = {}
    if not plan.realistic:
        # Short leases and an eager reconciler, so the suite's version takes seconds, not minutes.
        env = {"PIXELMILL_TASK_LEASE_SECONDS": "2"}
        settings.PIXELMILL_RECONCILE_GRACE_SECONDS = 1
        settings.PIXELMILL_STARTED_JOB_SILENCE_SECONDS = 5
    # The database restarts its ids for each transactional test, so an earlier test's campaign may have
    # had this id and left files in this folder: the count below is of this run's files only.
    shutil.rmtree(Path(django_settings.MEDIA_ROOT) / "outputs" / f"c{campaign.pk}", ignore_errors=True)
    add_sources(campaign, plan.tasks)
    process_campaign(campaign, [ready_recipes["social-ads-pack"]])
    total = campaign.tasks.count()
    rng = random.Random(7)
    pending = faults(plan, rng)
    happened: list[str] = []

    crew = Crew(plan, env)
    # Workers take turns: one forks a work-horse per job (so there are horses to kill), the next runs
    # two jobs on threads, the next one job in its own process.
    for n in range(plan.workers):
        crew.start(KINDS[n % len(KINDS)])
    scheduler = None
    if plan.realistic:
        scheduler = subprocess.Popen(
            [sys.executable, "manage.py", "rqcron", "jobs.cron", "--logging-level", "WARNING"],
            env={**worker_environment(), **env},
            cwd=ROOT,
        )
    # A task's kills while it is not yet terminal, first and last: a task killed again while it was
    # being recovered has two recoveries in a row, reported apart from one kill's recovery.
    killed_at: dict[int, list[float]] = {}
    killed_twice = 0
    recoveries: list[float] = []
    from_first: list[float] = []
    last_fault = time.monotonic()
    started = time.monotonic()
    deadline = started + 120 + total * 0.5
    try:
        while True:
            states = read_tasks(campaign)
            done = sum(state in Task.TERMINAL_STATES for state, _ in states.values())
            for pk, kills in list(killed_at.items()):
                if states[pk][0] in Task.TERMINAL_STATES:
                    recoveries.append(time.monotonic() - kills[-1])
                    if len(kills) > 1:
                        killed_twice += 1
                        from_first.append(time.monotonic() - kills[0])
                    del killed_at[pk]
            if done == total and not pending:
                break
            now = time.monotonic()
            if now > (last_fault + QUIET_AFTER_LAST_FAULT if plan.realistic else deadline):
                break
            if pending and done >= pending[0][0] * total:
                fault = pending[0][1]
                if strike(fault, crew, states, killed_at, rng, plan, redis_conn):
                    pending.pop(0)
                    happened.append(fault)
                    last_fault = time.monotonic()
            crew.replace_exited()
            if not plan.realistic:
                try:
                    reconcile_task()
                except DatabaseError:
                    connection.close()
            time.sleep(0.25)
    finally:
        crew.stop()
        if scheduler is not None:
            scheduler.terminate()
            scheduler.wait(20)

    states = read_tasks(campaign)
    not_terminal = sum(state not in Task.TERMINAL_STATES for state, _ in states.values())
    succeeded = sum(state == Task.State.SUCCEEDED for state, _ in states.values())
    # Lost: a task that neither succeeded nor failed with a reason a marketer can read.
    explained = campaign.tasks.failed().exclude(error_message="").count()
    lost = total - succeeded - explained
    outputs = Output.objects.filter(task__campaign=campaign)
    folder = Path(django_settings.MEDIA_ROOT) / "outputs" / f"c{campaign.pk}"
    files = [path for path in folder.rglob("*") if path.is_file()]
    # One file per output spec plus the preview, per task; any other file is an output written twice.
    duplicates = len(files) - total * (OUTPUTS_PER_TASK + 1)
    with capsys.disabled():
        print(
            f"\nchaos: {total} tasks on {plan.workers} workers in {time.monotonic() - started:.0f} s; "
            f"faults {', '.join(f'{happened.count(k)} {k}' for k in dict.fromkeys(happened))}\n"
            f"  tasks lost: {lost} (succeeded {succeeded}, failed or dead with a reason {explained})\n"
            f"  duplicate outputs: {max(duplicates, 0)} ({outputs.count()} outputs, {len(files)} files)\n"
            f"  not terminal {'15 min after the last fault' if plan.realistic else 'at the deadline'}: "
            f"{not_terminal}\n"
            f"  longest recovery of a killed task: {max(recoveries, default=0):.1f} s "
            f"({len(recoveries)} killed tasks)"
            + (
                f"; {killed_twice} killed again while recovering, the longest of those "
                f"{max(from_first):.1f} s from its first kill"
                if from_first
                else ""
            )
        )
    assert not pending, f"faults never struck: {pending}"
    assert not_terminal == 0 and lost == 0
    assert succeeded == total, "every task of good images succeeds"
    # Exactly one output per task and spec, each file present with the recorded size, no stray copies.
    assert outputs.count() == total * OUTPUTS_PER_TASK and duplicates == 0
    for output in outputs:
        assert default_storage.size(output.file.name) == output.byte_size


def strike(fault, crew: Crew, states, killed_at, rng, plan: Plan, redis_conn) -> bool:
    """Deal one fault; False when it cannot strike yet (no worker is busy at this instant)."""
    if fault == "flush":
        redis_conn.flushall()  # Redis restarted empty
        return True
    if fault == "database":
        subprocess.run(plan.db_restart, check=True, capture_output=True, timeout=120)
        connection.close()
        return True
    # A threaded worker's threads are named "<process>.t2", …: killing the process kills all of them.
    busy = {name: [pk for pk, (state, worker) in states.items()
                   if state == "running" and (worker or "").partition(".t")[0] == name]
            for name in crew.processes}  # fmt: skip
    if fault == "horse":
        candidates = [
            (name, horses)
            for name, process in crew.processes.items()
            if crew.classes[name][1] == FORKING and busy[name] and (horses := child_pids(process.pid))
        ]
    else:
        candidates = [(name, []) for name in crew.processes if busy[name]]
    if not candidates:
        return False
    name, horses = rng.choice(candidates)
    victims = (
        horses if fault == "horse" else [*child_pids(crew.processes[name].pid), crew.processes[name].pid]
    )
    try:
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False  # that job had just finished; pick again
    for pk in busy[name]:
        killed_at.setdefault(pk, []).append(time.monotonic())
    return True
