"""Can-I-deploy without a broker: which consumers a new version of a service would break.

The committed contracts say what each consumer expects of the service; the registry says
which services consume it (those whose ``dependencies`` name it). Every contract whose
provider is the service is verified against the new version, and each consumer is OK,
BROKEN (with its failing interactions) or UNCHECKED: it depends on the service but has no
committed contract (so nothing protects it), or only message contracts and no published
events were given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.contracts.pact import Pact
from hybridmesh.contracts.verify import InteractionResult, verify_provider
from hybridmesh.registry.models import ServiceDefinition

OK, BROKEN, UNCHECKED = "OK", "BROKEN", "UNCHECKED"


@dataclass
class ConsumerVerdict:
    consumer: str
    status: str
    failures: list[InteractionResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "status": self.status,
            "failures": [f.to_dict() for f in self.failures],
        }


@dataclass
class CheckReport:
    service: str
    url: str | None
    consumers: list[ConsumerVerdict]
    error: str | None = None

    @property
    def broken(self) -> list[str]:
        return [c.consumer for c in self.consumers if c.status == BROKEN]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.broken

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "url": self.url,
            "ok": self.ok,
            "error": self.error,
            "consumers": [c.to_dict() for c in self.consumers],
        }


def registry_consumers(service: str, definitions: Iterable[ServiceDefinition]) -> set[str]:
    """The services whose dependencies name ``service``."""
    return {d.name for d in definitions if any(dep.service == service for dep in d.dependencies)}


async def check(
    service: str,
    url: str | None,
    contracts: Sequence[Pact],
    consumers: Iterable[str] = (),
    events: Sequence[Mapping[str, Any]] | None = None,
) -> CheckReport:
    """Verify ``service``'s contracts against its new version at ``url`` (and its message
    contracts against ``events``), one verdict per consumer."""
    mine = [c for c in contracts if c.provider == service]
    report = await verify_provider(service, url, mine, events)
    by_consumer: dict[str, list[InteractionResult]] = {}
    for result in report.results:
        by_consumer.setdefault(result.consumer, []).append(result)
    verdicts = []
    for consumer in sorted(set(by_consumer) | set(consumers)):
        if consumer not in by_consumer:
            verdicts.append(ConsumerVerdict(consumer, UNCHECKED))
            continue
        failures = [r for r in by_consumer[consumer] if not r.ok]
        broken = failures or report.error is not None
        verdicts.append(ConsumerVerdict(consumer, BROKEN if broken else OK, failures))
    return CheckReport(service, url, verdicts, report.error)


__all__ = ["BROKEN", "OK", "UNCHECKED", "CheckReport", "ConsumerVerdict", "check"]
