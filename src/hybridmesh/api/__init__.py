"""The HTTP API of a hybridmesh process: event ingest, WebSocket fan-out, metrics, health.

:func:`create_app` builds the aiohttp application; :func:`run_server` serves it until
stopped. Errors are answered as RFC 9457 problem details (:mod:`hybridmesh.api.problems`).
"""

from hybridmesh.api.app import create_app
from hybridmesh.api.problems import PROBLEM_CONTENT_TYPE, problem_response
from hybridmesh.api.server import run_server

__all__ = ["PROBLEM_CONTENT_TYPE", "create_app", "problem_response", "run_server"]
