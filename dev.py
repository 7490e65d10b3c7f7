#!/usr/bin/env python3
"""One entry point for people and CI: `python3 dev.py demo` and `python3 dev.py test`.

Creates .venv with the project and its dev extras on first use (and again when
pyproject.toml changes), then runs the demo or every check CI runs: ruff lint and format,
mypy --strict, and pytest. Needs only Python 3.11+ and network access to PyPI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("STOREOPS_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".storeops-installed"

TYPED = ["storeops", "flows", "connectors"]


def _say(text: str) -> None:
    print(f"[dev] {text}", flush=True)


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"storeops needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text().strip() == wanted and PY.exists():
        return
    if not PY.exists():
        _say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    _say("installing storeops and its dev tools (first run takes a minute or two)")
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def ensure_browser() -> None:
    """The inbox's browser tests drive Debian's Chromium (never a downloaded browser).
    Install it (and a CJK font for readable screenshots) when missing and we may."""
    if Path("/usr/bin/chromium").exists():
        return
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        _say("no /usr/bin/chromium: the browser tests need `apt-get install chromium`")
        return
    _say("installing Debian's chromium for the browser tests (once)")
    packages = ["chromium", "fonts-wqy-microhei"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run([apt, "install", "-y", "-q", *packages], env=env).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env)
        subprocess.run([apt, "install", "-y", "-q", *packages], env=env)


def run(cmd: list[str]) -> int:
    _say(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT).returncode


def test(extra: list[str]) -> int:
    tools = BIN
    checks = [
        [str(tools / "ruff"), "check", "."],
        [str(tools / "ruff"), "format", "--check", "."],
        [str(tools / "mypy"), "--strict", *TYPED],
    ]
    for cmd in checks:
        if run(cmd) != 0:
            _say(f"failed: {' '.join(cmd)}")
            return 1
    ensure_browser()
    code = run([str(PY), "-m", "pytest", *extra])
    if code == 5:
        _say("pytest collected no tests: that is a failure here")
        return 1
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup", "storeops"):
        print("usage: python3 dev.py demo | test [pytest args] | setup | storeops ARGS...")
        return 2
    ensure_env()
    if argv[0] == "demo":
        return run([str(BIN / "storeops"), "demo"])
    if argv[0] == "test":
        return test(argv[1:])
    if argv[0] == "storeops":
        return run([str(BIN / "storeops"), *argv[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
