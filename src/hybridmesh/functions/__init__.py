"""Serverless functions: registered by name, run in-process or over HTTP, and triggered by
events, cron schedules or workflow steps.

- :class:`FunctionRegistry` registers Python callables (:meth:`~FunctionRegistry.register`,
  :meth:`~FunctionRegistry.function`) and HTTP endpoints
  (:meth:`~FunctionRegistry.register_http`), and invokes either with a timeout, a
  concurrency limit, a span and typed errors.
- :class:`FunctionTriggers` runs them on events from the bus and on cron schedules.
"""

from hybridmesh.functions.registry import (
    FunctionCall,
    FunctionDefinition,
    FunctionFailedError,
    FunctionHandler,
    FunctionNotFoundError,
    FunctionRegistry,
    is_retryable_failure,
)
from hybridmesh.functions.triggers import FunctionTriggers, ScheduledFunction

__all__ = [
    "FunctionCall",
    "FunctionDefinition",
    "FunctionFailedError",
    "FunctionHandler",
    "FunctionNotFoundError",
    "FunctionRegistry",
    "FunctionTriggers",
    "ScheduledFunction",
    "is_retryable_failure",
]
