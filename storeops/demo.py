"""`storeops demo`: validate the shipped SOP library, then simulate promotion prep end to end.

Edge module. Until issue 3 lands this runs in-process with a fake clock and scripted
people acting through the real completion path, on a real SQLite ledger under
STOREOPS_HOME/demo/, and prints the timeline and the ledger verification.
"""

from __future__ import annotations

from typing import Any

from storeops.ledger import open_ledger
from storeops.loader import validate_paths
from storeops.simulate import load_scenario, simulate
from storeops.templates import TemplateLibrary


def run_demo(cfg: Any) -> int:
    print(f"== 1. validating the SOP library in {cfg.sops}")
    diagnostics, count = validate_paths([cfg.sops], templates_root=cfg.templates)
    for diag in diagnostics:
        print(diag)
    errors = [d for d in diagnostics if d.severity == "error"]
    print(f"{count} file(s): {len(errors)} error(s)")
    if errors:
        return 1
    scenario_path = cfg.sops / "scenarios" / "promotion-prep.scenario.yaml"
    print(f"\n== 2. simulating promotion-prep with scripted people ({scenario_path})")
    folder = cfg.home / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    ledger_path = folder / "ledger.db"
    for suffix in ("", "-wal", "-shm"):
        (folder / f"ledger.db{suffix}").unlink(missing_ok=True)
    ledger = open_ledger(str(ledger_path))
    result = simulate(
        load_scenario(scenario_path),
        ledger=ledger,
        sops_dir=cfg.sops,
        templates=TemplateLibrary(cfg.templates),
        roster=cfg.roster(),
        locale=cfg.locale,
    )
    for line in result.lines:
        print(line)
    total = len(result.covered) + len(result.uncovered)
    print(f"\nrun {result.run_id}: {result.status}; covered {len(result.covered)}/{total} states")
    print(f"messages delivered to people: {len(result.outbox)}")
    print("\n== 3. verifying the ledger's hash chains")
    report = ledger.verify()
    print(
        f"{report.runs_checked} run(s), {report.events_checked} event(s): "
        + ("intact" if report.ok else "TAMPERED")
    )
    for problem in result.problems:
        print(f"scenario problem: {problem}")
    print(
        f"\nLook closer: storeops --ledger {ledger_path} show {result.run_id}\n"
        f"             storeops --ledger {ledger_path} verify\n"
        "             storeops graph promotion-prep"
    )
    ledger.close()
    return 0 if result.ok and report.ok else 1
