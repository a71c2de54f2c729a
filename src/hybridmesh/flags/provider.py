"""An OpenFeature provider over a :class:`~hybridmesh.flags.client.FlagClient`.

::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    flags = await FlagClient(store).start()
    api.set_provider(HybridmeshProvider(flags))
    client = api.get_client()
    client.get_boolean_value("new-checkout", False, EvaluationContext("user-42", {"plan": "pro"}))

Evaluations run in process on the client's cached flags (no I/O). The evaluation
context's targeting key is the flag's targeting key, its attributes the rules' attributes.
Reasons, variants and error codes are passed through as OpenFeature names them; under
OpenFeature any error code (``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``,
``TARGETING_KEY_MISSING``) makes the SDK return the caller's default value. Integer and
float calls ask for a number flag; a float flag's value asked as an integer must be whole.
A reload that changed flags is announced as ``PROVIDER_CONFIGURATION_CHANGED`` with the
keys changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.evaluation import ERROR, TYPE_MISMATCH, Evaluation
from hybridmesh.flags.model import Kind

T = TypeVar("T")

_EMPTY: Mapping[str, Any] = {}
_REASONS = {reason.value: reason for reason in Reason}
_ERRORS = {code.value: code for code in ErrorCode}


class HybridmeshProvider(AbstractProvider):
    """OpenFeature's view of a started :class:`FlagClient`."""

    def __init__(self, client: FlagClient) -> None:
        super().__init__()
        self.client = client
        self._unsubscribe: Callable[[], None] | None = None

    def get_metadata(self) -> Metadata:
        return Metadata(name="hybridmesh")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if not self.client.ready:
            raise ProviderNotReadyError("start the FlagClient (await client.start()) first")
        if self._unsubscribe is None:
            self._unsubscribe = self.client.on_change(self._changed)

    def shutdown(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _changed(self, keys: frozenset[str]) -> None:
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=sorted(keys)))

    # -- resolving -------------------------------------------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, "boolean", default_value, evaluation_context)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, "string", default_value, evaluation_context)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        details = self._resolve(flag_key, "number", default_value, evaluation_context)
        value: Any = details.value
        if details.error_code is None and value.__class__ is float:
            if not value.is_integer():
                return _mismatch(
                    default_value, f"flag {flag_key!r} serves {value}, not a whole number"
                )
            details.value = int(value)
        return details

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        details = self._resolve(flag_key, "number", default_value, evaluation_context)
        if details.error_code is None and details.value.__class__ is int:
            details.value = float(details.value)
        return details

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, "object", default_value, evaluation_context)

    def _resolve(
        self,
        flag_key: str,
        kind: Kind,
        default_value: T,
        context: EvaluationContext | None,
    ) -> FlagResolutionDetails[T]:
        if context is None:
            found = self.client.evaluate_kind(flag_key, kind, _EMPTY, default_value)
        else:
            found = self.client.evaluate_kind(
                flag_key, kind, context.attributes, default_value, context.targeting_key
            )
        return _details(found)


def _details(found: Evaluation) -> FlagResolutionDetails[Any]:
    code = found.error_code
    return FlagResolutionDetails(
        value=found.value,
        error_code=None if code is None else _ERRORS.get(code, ErrorCode.GENERAL),
        error_message=found.error_message,
        reason=_REASONS.get(found.reason, found.reason),
        variant=found.variant,
    )


def _mismatch(default: Any, message: str) -> FlagResolutionDetails[Any]:
    return _details(Evaluation(default, None, ERROR, "", TYPE_MISMATCH, message))


__all__ = ["HybridmeshProvider"]
