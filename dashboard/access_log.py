"""Gunicorn's logs (access and errors) without the secrets some URLs carry: the same redaction as every log."""

from __future__ import annotations

from gunicorn.glogging import Logger

from dashboard.redaction import RedactSecrets


class RedactingLogger(Logger):
    """`logger_class` in dashboard/gunicorn_config.py: gunicorn's own handlers get the filter that the root
    handlers have (settings.LOGGING), so paths keep their shape, not their keys."""

    def setup(self, cfg) -> None:
        super().setup(cfg)  # also on every reopen and reload: handlers are made anew
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(existing, RedactSecrets) for existing in handler.filters):
                    handler.addFilter(RedactSecrets())
