"""Run the storeops benchmarks and print medians, same-run ratios and PASS/MISS per target.

    python bench/run.py                  # all: engine, replay, ledger, ledger_pg, validate
    python bench/run.py engine replay    # some, by name
    python bench/run.py --check          # exit 1 if a target is missed
    python bench/run.py --markdown       # tables as Markdown (for BENCHMARKS.md)

Reports, does not gate: the exit code is 0 unless `--check` is given.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/run.py`: import `bench.*` and the working tree's storeops, and keep
# bench/ itself off the path so its module names cannot shadow a library's.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Section, render_markdown, render_text  # noqa: E402

BENCHMARKS = ("engine", "replay", "ledger", "ledger_pg", "validate")


def _runner(name: str) -> Callable[[], Section]:
    module = importlib.import_module(f"bench.{name}")
    runner: Callable[[], Section] = module.run
    return runner


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = [f"Python {platform.python_version()}"]
    for package in ("storeops", "transitions", "python-statemachine", "ruamel.yaml", "pydantic"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} (not installed)")
    found.append(f"SQLite {__import__('sqlite3').sqlite_version}")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    bad = [n for n in names if n not in BENCHMARKS]
    if bad:
        parser.error(f"unknown benchmark {bad[0]!r}; choose from {', '.join(BENCHMARKS)}")

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"storeops benchmarks, {stamp}; {os.cpu_count()} CPUs; {_versions()}", flush=True)
    started = time.perf_counter()
    sections: list[Section] = []
    for name in names:
        began = time.perf_counter()
        section = _runner(name)()
        section.seconds = time.perf_counter() - began
        sections.append(section)
        print()
        print(render_markdown(section) if args.markdown else render_text(section), flush=True)

    targets = [t for s in sections for t in s.targets]
    missed = [t for t in targets if not t.passed]
    print()
    print(
        f"{len(targets) - len(missed)} of {len(targets)} targets met "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for target in missed:
        print(f"  {target.line()}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
