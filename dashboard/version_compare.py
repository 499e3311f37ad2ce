"""Two versions of a recipe compared: their outputs paired by name, and what changed between them in words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dashboard.models import Output, RecipeVersion, SourceImage, Task
from jobs.operations import OPERATIONS


@dataclass(frozen=True)
class OutputPair:
    name: str
    before: Output | None
    after: Output | None


@dataclass(frozen=True)
class SourceComparison:
    source: SourceImage
    before: Task | None
    after: Task | None
    pairs: list[OutputPair]


def compare_sources(
    sources: list[SourceImage], before: RecipeVersion, after: RecipeVersion
) -> list[SourceComparison]:
    """Per source, its task in each version and the outputs paired by name (the newer version's order first)."""
    names = [spec["name"] for spec in after.definition["outputs"]]
    names += [spec["name"] for spec in before.definition["outputs"] if spec["name"] not in names]
    rows = []
    for source in sources:
        tasks = {task.recipe_version_id: task for task in source.tasks.all()}
        task_before, task_after = tasks.get(before.pk), tasks.get(after.pk)
        outputs_before = {o.name: o for o in task_before.outputs.all()} if task_before else {}
        outputs_after = {o.name: o for o in task_after.outputs.all()} if task_after else {}
        pairs = [OutputPair(name, outputs_before.get(name), outputs_after.get(name)) for name in names]
        rows.append(SourceComparison(source, task_before, task_after, pairs))
    return rows


def label(operation: str) -> str:
    found = OPERATIONS.get(operation)
    return found.label if found else operation


def shown(key: str, value: object, provider_names: Mapping[str, str]) -> str:
    """A setting's value as a marketer reads it: a provider by its name, no Python quoting."""
    if key == "provider":
        return provider_names.get(str(value), str(value)) if value else "our workers"
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def definition_changes(
    before: dict, after: dict, provider_names: Mapping[str, str] | None = None
) -> list[str]:
    """What an admin changed between two versions, in words: steps by position, outputs by name."""
    names = provider_names or {}
    changes = []
    steps_before, steps_after = before.get("steps", []), after.get("steps", [])
    for n in range(max(len(steps_before), len(steps_after))):
        old = steps_before[n] if n < len(steps_before) else None
        new = steps_after[n] if n < len(steps_after) else None
        if old == new:
            continue
        if old is None:
            changes.append(f"Step {n + 1} added: {label(new['operation'])}")
        elif new is None:
            changes.append(f"Step {n + 1} removed: {label(old['operation'])}")
        elif old["operation"] != new["operation"]:
            changes.append(f"Step {n + 1}: {label(old['operation'])} became {label(new['operation'])}")
        else:
            changes.extend(
                f"Step {n + 1} ({label(new['operation'])}): {key} {shown(key, old_value, names)} → {shown(key, new_value, names)}"
                for key, old_value, new_value in changed_fields(
                    {**old["params"], "provider": old.get("provider")},
                    {**new["params"], "provider": new.get("provider")},
                )
            )
    outputs_before = {spec["name"]: spec for spec in before.get("outputs", [])}
    outputs_after = {spec["name"]: spec for spec in after.get("outputs", [])}
    for name, spec in outputs_after.items():
        if name not in outputs_before:
            changes.append(f"Output {name} added ({spec['width']}×{spec['height']} {spec['format']})")
        else:
            changes.extend(
                f"Output {name}: {key.replace('_', ' ')} {shown(key, old_value, names)} → {shown(key, new_value, names)}"
                for key, old_value, new_value in changed_fields(outputs_before[name], spec)
            )
    changes.extend(f"Output {name} removed" for name in outputs_before if name not in outputs_after)
    return changes


def changed_fields(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return [
        (key, old.get(key), new.get(key))
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    ]
