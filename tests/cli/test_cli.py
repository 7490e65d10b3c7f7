"""The CLI as people use it: real processes, a real ledger file, clear errors, no tracebacks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT, VALID


def cli(home: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "STOREOPS_HOME": str(home), **env}
    result = subprocess.run(
        [sys.executable, "-m", "storeops.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert 0 == result.returncode, result.stderr + result.stdout
    return result


FIXTURE_ARGS = ["--sops", str(VALID), "--templates", str(FIXTURES / "templates")]


def start(home: Path, sop: str, *args: str) -> str:
    out = cli(home, *FIXTURE_ARGS, "start", sop, "--as", "ann", "--format", "json", *args)
    run: str = json.loads(out.stdout)["run"]
    return run


def test_start_done_reject_show_verify(tmp_path: Path) -> None:
    run = start(tmp_path, "approvals")
    tasks = json.loads(
        cli(tmp_path, *FIXTURE_ARGS, "tasks", "--as", "cai", "--format", "json").stdout
    )
    assert [("draft", run)] == [(t["step"], t["run"]) for t in tasks]
    assert [] == json.loads(
        cli(tmp_path, *FIXTURE_ARGS, "tasks", "--as", "dee", "--format", "json").stdout
    )
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8 not really a jpeg")
    cli(
        tmp_path,
        *FIXTURE_ARGS,
        "done",
        run,
        "draft",
        "--as",
        "cai",
        "--field",
        "title=绿茶 250g",
        "--field",
        "price=39.9",
        "--note",
        "first draft",
        "--check",
        "all",
    )
    wrong = cli(tmp_path, *FIXTURE_ARGS, "done", run, "approve", "--as", "dee", check=False)
    assert 1 == wrong.returncode
    assert wrong.stderr.startswith("error: dee may not act on step 'approve'")
    cli(tmp_path, *FIXTURE_ARGS, "reject", run, "approve", "--as", "ann", "--reason", "price")
    shown = cli(tmp_path, *FIXTURE_ARGS, "show", run).stdout
    assert "✗ approve rejected by ann: price" in shown
    assert "⊘ dee refused on approve" in shown
    assert "waiting for:" in shown
    verified = cli(tmp_path, *FIXTURE_ARGS, "verify")
    assert "intact" in verified.stdout
    runs = cli(tmp_path, *FIXTURE_ARGS, "runs").stdout
    assert run in runs
    assert "running" in runs


def test_tampering_is_detected_by_verify(tmp_path: Path) -> None:
    run = start(tmp_path, "approvals")
    cli(
        tmp_path,
        *FIXTURE_ARGS,
        "done",
        run,
        "draft",
        "--as",
        "cai",
        "--field",
        "title=t",
        "--field",
        "price=1",
        "-c",
        "all",
    )
    db = tmp_path / "ledger.db"
    with sqlite3.connect(db) as conn:
        body = conn.execute(
            "SELECT body FROM events WHERE run_id=? AND type='task.completed'", (run,)
        ).fetchone()[0]
        forged = bytes(body).replace(b'"cai"', b'"bo"')
        conn.execute(
            "UPDATE events SET body=? WHERE run_id=? AND type='task.completed'", (forged, run)
        )
    result = cli(tmp_path, "verify", check=False)
    assert 1 == result.returncode
    assert "TAMPERED" in result.stdout
    assert "task.completed" in result.stdout


def test_two_processes_completing_one_step_record_one_winner(tmp_path: Path) -> None:
    """Both processes pass every check at the same moment; the ledger lets one win."""
    for round_ in range(4):
        run = start(tmp_path, "approvals")
        go = time.time() + 1.5
        argv = [
            *FIXTURE_ARGS,
            "done",
            run,
            "draft",
            "--as",
            "__WHO__",
            "-f",
            "title=t",
            "-f",
            "price=1",
            "-c",
            "all",
        ]
        script = (
            "import time, sys; from storeops.cli import main; "
            f"time.sleep(max(0, {go} - time.time())); "
            f"sys.exit(main({argv!r}))"
        )
        env = {**os.environ, "STOREOPS_HOME": str(tmp_path)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script.replace("__WHO__", who)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who in ("bo", "cai")
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert [0, 1] == codes, (round_, outs)
        loser = next(err for (out, err), p in zip(outs, procs, strict=True) if p.returncode)
        assert "was already done by" in loser, loser
        assert "Traceback" not in loser
        events = json.loads(cli(tmp_path, *FIXTURE_ARGS, "show", run, "--format", "json").stdout)
        completed = [e for e in events["events"] if e["type"] == "task.completed"]
        assert 1 == len(completed)
    assert "intact" in cli(tmp_path, "verify").stdout


def test_user_mistakes_get_one_line_and_exit_1_or_2(tmp_path: Path) -> None:
    cases: list[tuple[list[str], int, str]] = [
        (["start", "nope", "--as", "ann"], 1, "error: no SOP 'nope'"),
        (
            ["start", "approvals", "--as", "mallory"],
            1,
            "error: --as 'mallory' is not in the roster",
        ),
        (
            ["start", "order-wave-mini", "--as", "ann"],
            1,
            "error: SOP order-wave-mini v1 needs orders",
        ),
        (["start", "approvals", "--as", "ann", "--param", "oops"], 1, "must look like NAME=VALUE"),
        (["show", "no-such-run"], 1, "error: no run 'no-such-run'"),
        (["done", "no-such-run", "x", "--as", "ann"], 1, "error: no run 'no-such-run'"),
        (["frobnicate"], 2, "invalid choice"),
        (["done", "r1"], 2, "the following arguments are required"),
    ]
    for args, code, text in cases:
        result = cli(tmp_path, *FIXTURE_ARGS, *args, check=False)
        assert code == result.returncode, (args, result.stderr)
        assert text in result.stderr, (args, result.stderr)


def test_graph_schema_codes_and_simulate(tmp_path: Path) -> None:
    mermaid = cli(tmp_path, "graph", "promotion-prep").stdout
    assert mermaid.startswith("stateDiagram-v2")
    assert "golive --> wait_start : on_approve" in mermaid
    dot = cli(tmp_path, "graph", "promotion-prep", "--format", "dot", "--lang", "zh-CN").stdout
    assert "批准上线" in dot
    assert "cluster_prepare_pricing" in dot
    schema = json.loads(cli(tmp_path, "schema").stdout)
    assert "task" in json.dumps(schema)
    codes = cli(tmp_path, "codes").stdout
    assert "SOP103" in codes
    sim = cli(
        tmp_path,
        "simulate",
        "--script",
        "sops/scenarios/promotion-prep.scenario.yaml",
        "--format",
        "json",
    )
    report: dict[str, Any] = json.loads(sim.stdout)
    assert "succeeded" == report["status"]
    assert report["ledger_ok"]
    assert [] == report["problems"]
    assert "golive" in report["covered"]


def test_simulate_reports_a_failing_expectation(tmp_path: Path) -> None:
    script = tmp_path / "bad.scenario.yaml"
    script.write_text(
        "sop: approvals\nas: ann\nsteps:\n  - {after: 1h, as: dee, done: draft, "
        "fields: {title: t, price: 1}, checklist: all}\nexpect: {status: succeeded}\n",
        encoding="utf-8",
    )
    result = cli(tmp_path, *FIXTURE_ARGS, "simulate", "--script", str(script), check=False)
    assert 1 == result.returncode
    assert "scenario problem: step 1 (dee on draft)" in result.stdout
    assert "expected status succeeded, got failed" in result.stdout


@pytest.mark.parametrize("bad", ["sop: [unclosed\n", "sop: approvals\nas: ann\nsteps: 3\n"])
def test_simulate_rejects_a_bad_script_clearly(tmp_path: Path, bad: str) -> None:
    script = tmp_path / "bad.scenario.yaml"
    script.write_text(bad, encoding="utf-8")
    result = cli(tmp_path, *FIXTURE_ARGS, "simulate", "--script", str(script), check=False)
    assert 1 == result.returncode
    assert str(script) in result.stderr


def test_two_alerts_racing_open_one_incident(tmp_path: Path) -> None:
    go = time.time() + 1.5
    argv = [*FIXTURE_ARGS, "alert", "db-down", "--sop", "incident", "--severity", "sev1"]
    script = (
        "import time, sys; from storeops.cli import main; "
        f"time.sleep(max(0, {go} - time.time())); sys.exit(main({argv!r}))"
    )
    env = {**os.environ, "STOREOPS_HOME": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [0, 0] == [p.returncode for p in procs], outs
    said = sorted(out.split(" run ")[1].split()[1] for out, _err in outs)
    assert ["already", "started"] == said, outs
    runs = json.loads(cli(tmp_path, *FIXTURE_ARGS, "runs", "--format", "json").stdout)
    assert 1 == len(runs)
