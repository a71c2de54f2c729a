"""Batch targets from YAML, so a worker's schedules and formats are configuration:

.. code-block:: yaml

    targets:
      - target: legacy-erp
        operation: customer-sync      # or "*" (the default): every operation of the target
        format: csv                   # csv, xml, or http (a POST to endpoint)
        schedule: "0 2 * * *"         # cron, UTC; without one, a full batch or a manual flush
        limit: 10000                  # records in a full batch
        fields: [customer_id, email]  # the exported fields, in order (default: all keys)
      - target: legacy-erp
        operation: order-export
        format: http
        endpoint: http://erp.internal/batch/orders

Errors name the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import yaml

from hybridmesh.batch.target import BatchTarget
from hybridmesh.core.errors import Problem, ValidationError

_KEYS = {f.name for f in dataclass_fields(BatchTarget) if f.init}


def load_batch_targets(path: Path | str) -> list[BatchTarget]:
    """The targets in the YAML file at ``path``; ``ValidationError`` listing every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        root = yaml.compose(text)
    except OSError as error:
        raise ValidationError([Problem(f"cannot read it: {error}", file=name)]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ValidationError([Problem(f"not valid YAML: {error}", file=name, line=line)]) from None
    if root is None:
        return []
    data = yaml.safe_load(text)
    if data is None:
        return []
    entries, nodes = _entries(data, root)
    if entries is None:
        raise ValidationError(
            [Problem("expected a list of targets, or a 'targets:' list", file=name, line=1)]
        )
    targets: list[BatchTarget] = []
    problems: list[Problem] = []
    for index, (entry, node) in enumerate(zip(entries, nodes, strict=True)):
        line = node.start_mark.line + 1
        at = f"targets[{index}]"
        if not isinstance(entry, dict):
            problems.append(Problem("expected a mapping", file=name, line=line, field=at))
            continue
        unknown = sorted(set(entry) - _KEYS)
        for key in unknown:
            problems.append(
                Problem(
                    f"unknown key (known: {', '.join(sorted(_KEYS))})",
                    file=name,
                    line=_line_of(node, key) or line,
                    field=f"{at}.{key}",
                )
            )
        if unknown:
            continue
        options: dict[str, Any] = dict(entry)
        if isinstance(options.get("fields"), list):
            options["fields"] = tuple(str(f) for f in options["fields"])
        try:
            targets.append(BatchTarget(**options))
        except ValidationError as error:
            for problem in error.problems:
                key = problem.field if problem.field in _KEYS else None
                if key is None and "cron" in problem.message.lower():
                    key = "schedule"  # the cron parser names the cron field, not ours
                where = f"{at}.{key}" if key else at
                found = _line_of(node, key) if key else None
                problems.append(
                    Problem(problem.message, file=name, line=found or line, field=where)
                )
        except TypeError as error:
            problems.append(Problem(str(error), file=name, line=line, field=at))
    if problems:
        raise ValidationError(problems)
    return targets


def _entries(data: Any, root: yaml.Node) -> tuple[list[Any] | None, list[yaml.Node]]:
    """The list of target entries and their YAML nodes."""
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "targets" and isinstance(value, yaml.SequenceNode):
                listed = data.get("targets")
                return (listed if isinstance(listed, list) else None), list(value.value)
        return None, []
    if isinstance(data, list) and isinstance(root, yaml.SequenceNode):
        return data, list(root.value)
    return None, []


def _line_of(node: yaml.Node, key: str) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == key:
                return int(key_node.start_mark.line) + 1
    return None


__all__ = ["load_batch_targets"]
