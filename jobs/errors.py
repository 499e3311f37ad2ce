"""The three ways a step can fail, and what each means for a retry."""

from __future__ import annotations


class StepError(Exception):
    """A step failed; `code` is a stable slug, `message` is written for a marketer."""

    code = "step_failed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class PermanentError(StepError):
    """Retrying cannot help: unreadable input, invalid parameters, a 4xx from a provider."""

    code = "permanent"


class TransientError(StepError):
    """A retry may succeed: a timeout, a reset, a 5xx, a worker that went away."""

    code = "transient"


class RateLimitedError(TransientError):
    """The provider asked us to slow down; never retry before `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
