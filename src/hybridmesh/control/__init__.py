"""The control plane: a versioned HTTP API (``/api/v1``) over what the CLI manages.

Every operation is declared once (:mod:`~hybridmesh.control.declare`), which makes both its
route and its part of the OpenAPI document (:mod:`~hybridmesh.control.openapi`). Callers
authenticate with bearer tokens that carry a role (:mod:`~hybridmesh.control.auth`);
every write is audited (:mod:`~hybridmesh.control.audit`). The handlers call the same
functions as the CLI, so both validate alike and answer the same JSON.
"""

from hybridmesh.control.app import OPERATION_TABLES, mount_control_plane, openapi
from hybridmesh.control.audit import AuditEntry, AuditLog
from hybridmesh.control.auth import ApiToken, Principal, Role, TokenStore
from hybridmesh.control.plane import ControlPlane

__all__ = [
    "OPERATION_TABLES",
    "ApiToken",
    "AuditEntry",
    "AuditLog",
    "ControlPlane",
    "Principal",
    "Role",
    "TokenStore",
    "mount_control_plane",
    "openapi",
]
