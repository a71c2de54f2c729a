"""How the queues of one legacy target are delivered: :class:`BatchTarget`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hybridmesh.batch.delivery import Delivery
from hybridmesh.batch.file_delivery import FileDelivery
from hybridmesh.batch.http_delivery import HttpBulkDelivery
from hybridmesh.core.cron import CronSchedule
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import COUNT
from hybridmesh.core.names import name_problem
from hybridmesh.core.urls import http_url_problem

BatchFormat = Literal["csv", "xml", "http"]

#: Every operation of a target, in :attr:`BatchTarget.operation`.
ANY_OPERATION = "*"
DEFAULT_LIMIT = 10_000


@dataclass(frozen=True)
class BatchTarget:
    """How the queues of one target (and one operation, or every one: ``"*"``) are delivered.

    ``format`` is ``csv`` (default), ``xml`` or ``http`` (a POST to ``endpoint``); it is
    read once into :attr:`delivery`, the channel runs go out by.
    ``schedule`` is a cron expression (UTC) for regular flushes of the whole queue; without
    one, records wait for a full run or for
    :meth:`~hybridmesh.batch.integration.BatchIntegration.flush`. ``limit``
    (default 10,000) is the size of a full run, and caps every run. ``fields`` fixes the payload
    fields exported, in order (CSV columns, XML field elements); by default CSV has a column
    for every payload key of the run (sorted), XML every key of each record.

    ``target`` is a service name, so it follows the one name rule
    (:mod:`hybridmesh.core.names`). Raises :class:`ValidationError` for a bad target,
    schedule, format or endpoint (an http(s) URL, see :mod:`hybridmesh.core.urls`), a
    missing endpoint, or a limit that is not a whole number from 1 to 1,000,000.
    """

    target: str
    operation: str = ANY_OPERATION
    format: BatchFormat = "csv"
    schedule: str | None = None
    limit: int = DEFAULT_LIMIT
    endpoint: str | None = None
    fields: tuple[str, ...] | None = None
    cron: CronSchedule | None = field(init=False, default=None, repr=False, compare=False)
    delivery: Delivery = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"batch target {self.target}/{self.operation}"
        problems: list[Problem] = []
        target_problem = name_problem(self.target)
        if target_problem is not None:
            problems.append(Problem(f"target {target_problem}", field="target"))
            where = "batch target"
        delivery: Delivery | None = None
        if self.format == "http":
            if not self.endpoint:
                problems.append(
                    Problem(f"{where}: the http format needs an endpoint", field="endpoint")
                )
            elif not isinstance(self.endpoint, str):
                problems.append(Problem(f"{where}: must be a URL", field="endpoint"))
            elif (bad := http_url_problem(self.endpoint)) is not None:
                problems.append(Problem(f"{where}: {bad}", field="endpoint"))
            else:
                delivery = HttpBulkDelivery(self.endpoint)
        elif self.format in ("csv", "xml"):
            delivery = FileDelivery(self.format, self.fields)
        else:
            problems.append(Problem(f"{where}: use csv, xml or http", field="format"))
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            problems.append(Problem(f"{where}: must be a whole number", field="limit"))
        elif (wrong := COUNT.problem(self.limit)) is not None:
            problems.append(Problem(f"{where}: {wrong}", field="limit"))
        if problems:
            raise ValidationError(problems)
        object.__setattr__(self, "delivery", delivery)
        if self.schedule is not None:
            object.__setattr__(self, "cron", CronSchedule.parse(self.schedule))


__all__ = ["ANY_OPERATION", "DEFAULT_LIMIT", "BatchFormat", "BatchTarget"]
