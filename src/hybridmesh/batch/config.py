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

The file is read like every YAML input (UTF-8, within the limits of
:mod:`hybridmesh.core.yaml_source`, no key given twice). Errors name the file, the line and
the field.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from hybridmesh.batch.target import BatchTarget
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_source import Lines, Location, read_yaml

_KEYS = {f.name for f in dataclass_fields(BatchTarget) if f.init}


def load_batch_targets(path: Path | str) -> list[BatchTarget]:
    """The targets in the YAML file at ``path`` (none in an empty one), read within the
    limits of :mod:`hybridmesh.core.yaml_source`; ``ValidationError`` listing every problem."""
    name = str(path)
    documents = read_yaml(Path(path))
    if len(documents) > 1:
        raise ValidationError(
            [Problem("expected one YAML document", file=name, line=documents[1].lines.line)]
        )
    if not documents or documents[0].data is None:
        return []
    data, lines = documents[0].data, documents[0].lines
    found = _entries(data)
    if found is None:
        raise ValidationError(
            [Problem("expected a list of targets, or a 'targets:' list", file=name, line=1)]
        )
    entries, prefix = found
    targets: list[BatchTarget] = []
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        entry_lines = lines.under((*prefix, index)) or Lines(lines.line_of(prefix))
        line = entry_lines.line
        at = f"targets[{index}]"
        if not isinstance(entry, dict):
            problems.append(Problem("expected a mapping", file=name, line=line, field=at))
            continue
        unknown = sorted(str(key) for key in entry if key not in _KEYS)
        for key in unknown:
            problems.append(
                Problem(
                    f"unknown key (known: {', '.join(sorted(_KEYS))})",
                    file=name,
                    line=entry_lines.line_of((key,)),
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
                named = problem.field if problem.field in _KEYS else None
                if named is None and "cron" in problem.message.lower():
                    named = "schedule"  # the cron parser names the cron field, not ours
                problems.append(
                    Problem(
                        problem.message,
                        file=name,
                        line=entry_lines.line_of((named,)) if named else line,
                        field=f"{at}.{named}" if named else at,
                    )
                )
        except TypeError as error:
            problems.append(Problem(str(error), file=name, line=line, field=at))
    if problems:
        raise ValidationError(problems)
    return targets


def _entries(data: Any) -> tuple[list[Any], Location] | None:
    """The list of target entries and where it is in the document."""
    if isinstance(data, dict):
        listed = data.get("targets")
        return (listed, ("targets",)) if isinstance(listed, list) else None
    if isinstance(data, list):
        return data, ()
    return None


__all__ = ["load_batch_targets"]
