"""The request body deadline on its own: a slow but steady body earns its time piece by piece, a trickle is
cut off at the deadline. Bytes "arrive" through gevent.sleep, which a gevent.Timeout interrupts as it would a
socket read under gunicorn's gevent worker (tests/dashboard/test_web_server.py runs that server)."""

from __future__ import annotations

import time

import gevent
import pytest

from dashboard.slow_clients import DeadlineBody, RequestBodyTimeout


class ArrivingBody:
    """A WSGI input whose bytes arrive at `rate` bytes a second; a read waits for all it asked for, as
    gunicorn's does."""

    def __init__(self, size: int, rate: float) -> None:
        self.left = size
        self.rate = rate

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        gevent.sleep(size / self.rate)
        self.left -= size
        return b"x" * size


def test_a_slow_but_steady_body_earns_its_time_as_it_arrives():
    """100 KB at 200 KB/s, more than the minimum rate, takes 0.5 s: longer than the 0.2 s first deadline,
    which each piece received pushes back."""
    body = DeadlineBody(ArrivingBody(100_000, rate=200_000), timeout=0.2, min_rate=100_000)
    assert len(body.read()) == 100_000
    assert not body.timed_out


def test_a_trickling_body_is_cut_off_at_its_deadline():
    body = DeadlineBody(ArrivingBody(100_000, rate=1_000), timeout=0.2, min_rate=100_000)
    started = time.monotonic()
    with pytest.raises(RequestBodyTimeout):
        body.read(65_536)
    assert 0.15 < time.monotonic() - started < 1.0
    assert body.timed_out
    with pytest.raises(RequestBodyTimeout):  # and it stays cut off
        body.read(10)
