import subprocess
import sys

from hybridmesh.core.process import GC_THRESHOLDS


def test_tune_gc_freezes_start_up_and_collects_less_often() -> None:
    # In a child process: the collector's settings are the whole process's.
    script = (
        "import gc\n"
        "from hybridmesh.core.process import tune_gc\n"
        "kept = [object() for _ in range(100)]\n"
        "tune_gc()\n"
        "print(gc.get_threshold(), gc.get_freeze_count() > 100)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"{GC_THRESHOLDS} True"
