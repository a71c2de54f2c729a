"""The scripted upstream of the client tests, reused for the events transport."""

from tests.integration.client.conftest import upstream

__all__ = ["upstream"]
