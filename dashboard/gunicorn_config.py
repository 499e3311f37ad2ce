"""Gunicorn's settings for the web process, one copy for `make run` and the production image (`-c python:...`)."""

# Each connection is a greenlet, not one of a few threads: a client that sends its request slowly costs a
# greenlet while it trickles instead of starving every other page (gunicorn's docs: sync and thread workers
# need a buffering proxy in front of them; async workers handle slow clients themselves).
worker_class = "gevent"
worker_connections = 1000
# With gevent, the request line and headers must arrive within this, and an idle keep-alive ends after it;
# the body has its own deadline (dashboard.slow_clients.SlowBodyGuard).
keepalive = 5
# A worker whose loop is blocked this long (a huge recipe preview rendering in the web process) is replaced.
timeout = 300
accesslog = "-"
logger_class = "dashboard.access_log.RedactingLogger"
# Every request runs in a greenlet of its own, and Django keeps a database connection per greenlet: a
# connection kept open "for the next request" would be kept for nobody, so each request closes its own.
raw_env = ["PIXELMILL_DB_CONN_MAX_AGE=0"]


def child_exit(server: object, worker: object) -> None:
    """A web worker that ended (or was killed past its timeout) leaves live gauges behind: drop them."""
    from jobs.telemetry import mark_dead

    mark_dead(worker.pid)  # type: ignore[attr-defined]
