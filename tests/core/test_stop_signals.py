"""A serving process leaves after a stop signal even when its event loop never looks.

The runner drives Prefect flows in its event loop; Prefect swaps SIGTERM handlers during
each flow run and a loop stuck in a blocking call handles no signal. `StopSignals` takes
the signals in a thread of its own and ends the process after its grace period.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, stop_process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal masks")

STUCK = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from storeops.serving import StopSignals

    marker = Path(sys.argv[1])
    stop = StopSignals(grace=float(sys.argv[2]), on_deadline=marker.unlink)
    assert stop.install()
    # What Prefect's flow engine does while a flow runs: its own SIGTERM handler.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    marker.write_text("serving")
    while True:
        time.sleep(0.05)  # a loop that never hands control to anything else
    """
)


def _start(tmp_path: Path, grace: float) -> tuple[subprocess.Popen[bytes], Path]:
    marker = tmp_path / "address"
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", STUCK, str(marker), str(grace)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert process.poll() is None, (tmp_path / "stderr").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process, marker


def test_a_stuck_process_leaves_after_its_grace_and_cleans_up(tmp_path: Path) -> None:
    process, marker = _start(tmp_path, grace=1.0)
    # exit 0 from the deadline, not 3 from the handler the "flow engine" put in place
    assert 0 == stop_process(process, tmp_path / "stderr", seconds=20)
    assert not marker.exists()  # on_deadline ran
    assert "leaving anyway" in (tmp_path / "stderr").read_text()


def test_a_second_signal_leaves_at_once(tmp_path: Path) -> None:
    process, _ = _start(tmp_path, grace=60.0)  # only the second signal can end it in time
    process.terminate()
    time.sleep(0.2)
    assert 0 == stop_process(process, tmp_path / "stderr", seconds=20)
    assert "second stop signal" in (tmp_path / "stderr").read_text()
