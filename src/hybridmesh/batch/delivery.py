"""How a run of batch records reaches a legacy system: one :class:`Delivery` per channel.

A target's channel is a typed value, built once from its configuration
(:class:`~hybridmesh.batch.target.BatchTarget`):
:class:`~hybridmesh.batch.file_delivery.FileDelivery` writes CSV or XML files to the
exchange directory, and :class:`~hybridmesh.batch.http_delivery.HttpBulkDelivery` POSTs JSON
to a bulk endpoint. The scheduler (:class:`~hybridmesh.batch.integration.BatchIntegration`)
decides when a run goes out and calls the target's delivery, handing it what every channel
shares in a :class:`DeliveryContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from hybridmesh.batch.ledger import BatchLedger, BatchRun
from hybridmesh.batch.results import ResultRecorder
from hybridmesh.core.clock import Clock
from hybridmesh.store import Store


@dataclass(frozen=True)
class DeliveryContext:
    """What deliveries share: the store and ledger, where files go, how results are applied,
    the clock, and the HTTP session (with the time one request may take)."""

    store: Store
    ledger: BatchLedger
    results: ResultRecorder
    exchange_dir: Path
    clock: Clock
    http: Callable[[], aiohttp.ClientSession]
    http_timeout: float


@dataclass(frozen=True)
class RunOutcome:
    """One run that went out, or was meant to: ``delivered`` is false when the legacy side
    could not be reached, and the run's records are queued again."""

    run: BatchRun
    delivered: bool


class Delivery(Protocol):
    """One channel to a legacy system."""

    @property
    def kind(self) -> str:
        """What the run's ``format`` column records (``csv``, ``xml``, ``http``)."""
        ...

    async def deliver(
        self, context: DeliveryContext, target: str, operation: str, limit: int
    ) -> RunOutcome | None:
        """Claim up to ``limit`` queued records of (``target``, ``operation``) and send them
        as one run; ``None`` when nothing is queued. A delivery that could not reach the
        legacy side returns an undelivered outcome; a local failure (a file that cannot be
        written, the store) raises, and the records stay queued."""
        ...


__all__ = ["Delivery", "DeliveryContext", "RunOutcome"]
