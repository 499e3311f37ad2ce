"""The ways a step can fail, and what each means for a retry."""

from __future__ import annotations

import secrets
import traceback


class StepError(Exception):
    """A step failed; `code` is a stable slug, `message` is written for a marketer."""

    code = "step_failed"
    # Set when the error came from a provider: which one, and the HTTP status it answered (if any).
    provider: str | None = None
    http_status: int | None = None
    # Set on a bug (InternalError): the reference shared by the marketer's message and the staff log, and
    # the type, message and traceback only staff see.
    ref: str | None = None
    detail: str = ""
    # Set by the pipeline on the way out: the step that was running when it failed.
    step: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class PermanentError(StepError):
    """Retrying cannot help: unreadable input, invalid parameters, a 4xx from a provider."""

    code = "permanent"


class InternalError(PermanentError):
    """A bug on our side (an exception no step anticipated): it would fail the same way again.

    `message` is one plain sentence with `ref`; `detail` (type, message, traceback) is for staff only.
    """

    code = "internal_error"

    def __init__(self, message: str, *, ref: str, detail: str) -> None:
        super().__init__(message)
        self.ref = ref
        self.detail = detail

    @classmethod
    def from_exception(cls, exc: BaseException, *, doing: str) -> InternalError:
        """`exc` with a fresh ref; `doing` completes "Something went wrong on our side while …"."""
        ref = secrets.token_hex(4)
        return cls(
            f"Something went wrong on our side while {doing} (error ref {ref}). "
            "It will not be retried automatically; staff have the details.",
            ref=ref,
            detail=f"error ref {ref}\n" + "".join(traceback.format_exception(exc)),
        )


class TransientError(StepError):
    """A retry may succeed: a timeout, a reset, a 5xx, a worker that went away."""

    code = "transient"


class RateLimitedError(TransientError):
    """The provider asked us to slow down; never retry before `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class DeferredError(StepError):
    """Not a failure: the work was handed back unrun (a shared limit or an open circuit said wait)."""

    code = "deferred"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CreditsExhaustedError(StepError):
    """The provider's account has no credits left (HTTP 402): the campaign's remote work pauses."""

    code = "credits_exhausted"


class BudgetCapReachedError(CreditsExhaustedError):
    """The campaign's own budget cap would be passed by the next paid call: remote work pauses the same way."""

    code = "budget_reached"
