"""Kafka requests aiokafka's admin client does not offer: DeleteGroups (API key 42).

Deleting a consumer group removes its committed offsets, so a group made again with the
same name starts where its ``start`` setting says. The broker refuses while the group has
members (``NON_EMPTY_GROUP``); an unknown group is fine.
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

_GROUP_ID_NOT_FOUND = 69


class DeleteGroupsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 42
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(("group_id", String("utf-8")), ("error_code", Int16))),
    )


class DeleteGroupsRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 42
    API_VERSION = 0
    RESPONSE_TYPE = DeleteGroupsResponse_v0
    SCHEMA = Schema(("groups_names", Array(String("utf-8"))))


class DeleteGroupsRequest(Request[DeleteGroupsRequest_v0]):  # type: ignore[misc]
    API_KEY = 42

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(self, request_struct_class: type[DeleteGroupsRequest_v0]) -> DeleteGroupsRequest_v0:
        return request_struct_class(self._groups)


async def delete_groups(client_config: dict[str, Any], groups: list[str]) -> None:
    """Delete consumer groups (their offsets); raises the broker's error for any refused,
    except that the group did not exist."""
    admin = AIOKafkaAdminClient(**client_config)
    await admin.start()
    try:
        for group in groups:
            coordinator = await admin.find_coordinator(group)
            response = await admin._send_request(DeleteGroupsRequest([group]), coordinator)
            for _, code in response.results:
                if code and code != _GROUP_ID_NOT_FOUND:
                    raise for_code(code)(f"deleting consumer group {group!r}")
    finally:
        await admin.close()


__all__ = ["delete_groups"]
