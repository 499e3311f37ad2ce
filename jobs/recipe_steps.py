"""A recipe definition's steps as the operations a pipeline runs: local, at a provider, or chained there."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Self

from PIL import Image

from jobs.errors import PermanentError
from jobs.operations import Operation, OperationContext, build_operation


class RemoteStep(Operation):
    """`operations` run by the provider `provider` (a slug), or by `fallback` while its circuit is open.

    Usually one operation; consecutive steps at the same batching provider travel as one chain (one paid
    call, one upload and one download instead of one of each per step).
    """

    def __init__(
        self, operations: Operation | Sequence[Operation], provider: str, fallback: str | None = None
    ) -> None:
        self.operations = (operations,) if isinstance(operations, Operation) else tuple(operations)
        if not self.operations:
            raise ValueError("a remote step needs at least one operation")
        self.provider = provider
        self.fallback = fallback
        self.name = "+".join(op.name for op in self.operations)  # type: ignore[misc]
        self.label = " + ".join(op.label for op in self.operations)  # type: ignore[misc]

    @classmethod
    def from_params(cls, params: Mapping[str, object] | None) -> Self:
        raise TypeError("RemoteStep wraps operations; build it with RemoteStep(operation, provider)")

    @property
    def operation(self) -> Operation:
        """The operation of a single step (a chain has several: see `operations`)."""
        return self.operations[0]

    def params(self) -> dict[str, object]:
        if len(self.operations) == 1:
            return self.operation.params()
        return {"chain": [{"operation": op.name, "params": op.params()} for op in self.operations]}

    def source_scale(self) -> float | None:
        scale = 1.0
        for operation in self.operations:
            step_scale = operation.source_scale()
            if step_scale is None:
                return None
            scale *= step_scale
        return scale

    def then(self, other: RemoteStep) -> RemoteStep:
        return RemoteStep((*self.operations, *other.operations), self.provider, self.fallback)

    def apply(self, image: Image.Image, context: OperationContext) -> Image.Image:
        if context.remote is None:
            raise PermanentError(f"{self.name} needs provider {self.provider}, which is not available here.")
        result = context.remote(self, image)
        # A chain's result is several steps' work, so only a single step's result can be judged as its own.
        return self.operation.accept_result(image, result, context) if len(self.operations) == 1 else result

    def __repr__(self) -> str:
        return f"RemoteStep({list(self.operations)!r}, {self.provider!r}, {self.fallback!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteStep) and (other.operations, other.provider, other.fallback) == (
            self.operations,
            self.provider,
            self.fallback,
        )

    def __hash__(self) -> int:
        return hash((self.operations, self.provider, self.fallback))


def chain_remote_steps(steps: Sequence[Operation], batching: Set[str]) -> list[Operation]:
    """Fold runs of consecutive remote steps at the same provider (and fallback) into one chain, when every
    provider involved takes a whole chain in one call (`batching`: their slugs)."""
    chained: list[Operation] = []
    for step in steps:
        previous = chained[-1] if chained else None
        if (
            isinstance(step, RemoteStep)
            and isinstance(previous, RemoteStep)
            and (step.provider, step.fallback) == (previous.provider, previous.fallback)
            and step.provider in batching
            and (step.fallback is None or step.fallback in batching)
        ):
            chained[-1] = previous.then(step)
        else:
            chained.append(step)
    return chained


def step_providers(
    step: Mapping[str, Any], overrides: Mapping[str, str | None] | None
) -> tuple[str | None, str | None]:
    """The (provider, fallback) slugs a recipe step runs with, after a requeue's overrides."""
    provider, fallback = step.get("provider"), step.get("fallback")
    if overrides and step["operation"] in overrides:
        provider = overrides[step["operation"]]
        fallback = fallback if provider and fallback != provider else None
    return provider, fallback


def compile_steps(
    definition: Mapping[str, Any],
    overrides: Mapping[str, str | None] | None = None,
    *,
    batching: Callable[[set[str]], Set[str]],
) -> list[Operation]:
    """A recipe definition's steps as operations: local steps as they are, a step with a provider wrapped so
    that it runs remotely, and consecutive steps at one batching provider folded into a single call.

    `overrides` maps an operation to another provider's slug, or to None to run it locally (a requeue
    chose so for a task); the recipe's fallback stays when it differs from the new one. `batching` is
    asked, only when steps could be chained, which of the providers involved take a chain in one call.
    """
    steps: list[Operation] = []
    for step in definition["steps"]:
        operation = build_operation(step["operation"], step["params"])
        provider, fallback = step_providers(step, overrides)
        if provider:
            operation = RemoteStep(operation, provider, fallback)
        steps.append(operation)
    slugs = {slug for step in definition["steps"] for slug in step_providers(step, overrides) if slug}
    if len(steps) > 1 and slugs:
        steps = chain_remote_steps(steps, batching(slugs))
    return steps


def paid_calls(steps: Sequence[Operation]) -> tuple[str, ...]:
    """The provider of each paid call these steps make (a chain is one call)."""
    return tuple(step.provider for step in steps if isinstance(step, RemoteStep))
