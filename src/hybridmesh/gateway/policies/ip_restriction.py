"""``ip_restriction``: only clients from (or not from) some networks pass (Kong's
ip-restriction).

Settings::

    ip_restriction:
      allow: [10.0.0.0/8, 2001:db8::/32]   # only these may call (empty: anyone)
      deny: [10.6.6.0/24]                  # these may not, even when allowed

Each entry is a CIDR or a single address, IPv4 or IPv6; a CIDR with host bits set
(``10.0.0.1/8``) is refused when the routes are read, naming the network meant. A client
that is denied, or not allowed when ``allow`` is given, is answered 403 and never reaches
a backend. The client is the socket peer, or behind the gateway's trusted proxies
(``hybridmesh gateway --trusted-proxy CIDR``) the right-most ``X-Forwarded-For`` address
that is not a trusted proxy (:mod:`hybridmesh.gateway.addresses`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hybridmesh.gateway.addresses import NetworkSet, parse_address, parse_network
from hybridmesh.gateway.config import PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, ProxyRequest, problem
from hybridmesh.gateway.policies.base import ORDER_IP, Policy, PolicyContext, register_builder


def _cidr(value: str) -> str:
    return str(parse_network(value))


Cidr = Annotated[str, AfterValidator(_cidr)]


class IpRestrictionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Only clients in these networks pass (when the list is not empty).
    allow: tuple[Cidr, ...] = Field((), max_length=10_000)
    #: Clients in these networks are refused, even when ``allow`` has them.
    deny: tuple[Cidr, ...] = Field((), max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> IpRestrictionSettings:
        if not self.allow and not self.deny:
            raise ValueError("give at least one of allow and deny")
        return self


class IpRestriction(Policy):
    def __init__(self, settings: IpRestrictionSettings, context: PolicyContext) -> None:
        self.allow = NetworkSet.parse(settings.allow)
        self.deny = NetworkSet.parse(settings.deny)
        self._seen: dict[str, bool] = {}

    def _passes(self, client: str) -> bool:
        address = parse_address(client)
        if address is None:
            return False  # no address to judge (a Unix socket): refused
        if address in self.deny:
            return False
        return not self.allow or address in self.allow

    async def request(self, request: ProxyRequest) -> Answer | None:
        client = request.client_ip
        passes = self._seen.get(client)
        if passes is None:
            passes = self._passes(client)
            if len(self._seen) >= 4096:
                self._seen.clear()
            self._seen[client] = passes
        if passes:
            return None
        return problem(
            403,
            f"the address {client or '(none)'} may not use this route",
            request_id=request.request_id,
        )


register_policy(PolicyKind("ip_restriction", IpRestrictionSettings, ORDER_IP, __doc__ or ""))
register_builder("ip_restriction", IpRestriction)
