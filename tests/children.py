"""Child processes for tests that kill them: started from a script, killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    """Run ``script`` with ``args`` in a child Python; return once it prints ``ready``."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def kill(child: subprocess.Popen[str]) -> None:
    """SIGKILL: the child gets no chance to clean up."""
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
