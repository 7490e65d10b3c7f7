"""Validation: fixture files with their exact expected diagnostics, hostile input, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storeops.cli import main
from storeops.diagnostics import CODES, codes_markdown
from storeops.loader import Checker, load_roster, validate_paths
from storeops.schema import sop_schema
from storeops.templates import TemplateLibrary
from storeops.yamlsource import load_yaml
from tests.conftest import FIXTURES, INVALID, ROOT, VALID

INVALID_FILES = sorted(p for p in INVALID.glob("*.yaml") if p.name != "team.yaml")
VALID_FILES = sorted(p for p in VALID.glob("*.yaml") if p.name != "team.yaml")


def _checker(folder: Path) -> Checker:
    roster, problems = load_roster(folder / "team.yaml")
    assert roster is not None, problems
    return Checker(roster=roster, templates=TemplateLibrary(FIXTURES / "templates"))


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_fixture_has_no_problems(path: Path) -> None:
    loaded, problems = _checker(VALID).load(path)
    assert [] == [str(p) for p in problems]
    assert loaded is not None
    assert loaded.spec.id == path.stem


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_invalid_fixture_reports_exactly_the_expected_lines(path: Path) -> None:
    loaded, problems = _checker(INVALID).load(path.relative_to(ROOT))
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    assert expected == [str(p) for p in problems]
    assert loaded is None


def test_all_problems_of_a_file_come_at_once() -> None:
    """A structural error in one state does not hide graph or reference errors elsewhere."""
    text = (ROOT / "sops" / "promotion-prep.yaml").read_text(encoding="utf-8")
    broken = (
        text.replace("next: check_margin", "next: chek_margin")
        .replace("    role: designer", "    role: desinger")
        .replace(
            "check_margin:\n            type: choice", "check_margin:\n            type: choise"
        )
        .replace("template: promotion/briefing.md.j2", "template: promotion/brief.md.j2")
    )
    from storeops.yamlsource import load_yaml_text

    doc, problems = load_yaml_text(broken, "sops/promotion-prep.yaml")
    assert doc is not None
    assert not problems
    roster, _ = load_roster(ROOT / "sops" / "team.yaml")
    checker = Checker(roster=roster, templates=TemplateLibrary(ROOT / "templates"))
    loaded, found = checker.load_doc(doc, stem="promotion-prep")
    codes = sorted({d.code for d in found})
    assert loaded is None
    assert ["SOP102", "SOP103", "SOP120", "SOP121", "SOP130"] == codes
    assert all(d.line > 1 for d in found)


def test_shipped_library_is_clean() -> None:
    problems, count = validate_paths([ROOT / "sops"], templates_root=ROOT / "templates")
    assert [] == [str(p) for p in problems]
    assert count >= 2


def test_every_shipped_sop_declares_the_schema() -> None:
    from storeops.loader import NOT_SOPS

    for path in (ROOT / "sops").glob("*.yaml"):
        if path.name in NOT_SOPS:  # the roster and the monitors file are not SOPs
            continue
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schema/sop.schema.json", path


def test_checked_in_schema_is_current() -> None:
    written = json.loads((ROOT / "schema" / "sop.schema.json").read_text(encoding="utf-8"))
    assert sop_schema() == written


def test_codes_document_is_current_and_codes_are_unique() -> None:
    assert codes_markdown() == (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    assert len(CODES) == len(set(CODES))
    used = set()
    for path in (ROOT / "storeops").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        used |= {code for code in CODES if f'"{code}"' in text and path.name != "diagnostics.py"}
    assert set(CODES) - used <= {"SOP160"} | used  # every code is defined once
    assert {d.code for p in INVALID_FILES for d in _checker(INVALID).load(p)[1]} <= set(CODES)


# ---------------------------------------------------------------- hostile input


def _hostile_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        laughs.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    cases = {
        "billion-laughs": ("\n".join(laughs) + "\n", "SOP004"),
        "deep-nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "SOP005"),
        "deep-map-nesting": ("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "SOP005"),
        "tabs": ("id: x\nstates:\n\tdone: {type: succeed}\n", "SOP007"),
        "python-tag": ("id: !!python/object/apply:os.system [echo hacked]\n", "SOP004"),
        "empty": ("", "SOP006"),
        "only-comment": ("# nothing here\n", "SOP006"),
        "list-top": ("- a\n- b\n", "SOP006"),
        "syntax": ("id: [unclosed\n", "SOP002"),
    }
    found = {}
    for name, (text, code) in cases.items():
        path = tmp / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        found[name] = (path, code)
    raw = tmp / "non-utf8.yaml"
    raw.write_bytes(b"id: x\ntitle: caf\xe9\n")
    found["non-utf8"] = (raw, "SOP001")
    big = tmp / "huge.yaml"
    with big.open("w", encoding="utf-8") as fh:
        line = "# " + "x" * 1000 + "\n"
        for _ in range(20 * 1024):
            fh.write(line)
    found["20-MB"] = (big, "SOP001")
    return found


def test_hostile_input_gets_one_clear_line_quickly(tmp_path: Path) -> None:
    checker = Checker()
    for name, (path, code) in _hostile_cases(tmp_path).items():
        started = time.perf_counter()
        loaded, problems = checker.load(path)
        elapsed = time.perf_counter() - started
        assert loaded is None, name
        assert [code] == [p.code for p in problems], (name, [str(p) for p in problems])
        line = str(problems[0])
        assert "\n" not in line, line
        assert line.startswith(str(path)), line
        assert elapsed < 5.0, (name, elapsed)  # the hard limit, not a speed claim


def test_hostile_input_through_the_cli_never_shows_a_traceback(tmp_path: Path) -> None:
    cases = _hostile_cases(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "storeops.cli", "validate", *(str(p) for p, _ in cases.values())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr + result.stdout
    assert len(cases) == len([ln for ln in result.stdout.splitlines() if "error[SOP" in ln])


def test_positions_survive_the_fast_loader(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: p\nstates:\n  first:\n    type: task\n    next: x\n", encoding="utf-8")
    doc, problems = load_yaml(path)
    assert doc is not None
    assert not problems
    assert (3, 3) == doc.keys[("states", "first")]
    assert (5, 11) == doc.values[("states", "first", "next")]


# ---------------------------------------------------------------- the CLI


def test_validate_cli_exit_codes_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert 0 == main(["validate", "--templates-dir", str(FIXTURES / "templates"), str(VALID)])
    capsys.readouterr()
    assert 1 == main(["validate", "--format", "json", str(INVALID / "graph.yaml")])
    report = json.loads(capsys.readouterr().out)
    assert 8 == report["errors"]
    first = report["diagnostics"][0]
    assert {"code", "message", "file", "line", "column", "severity"} == set(first)
    with pytest.raises(SystemExit) as usage:
        main(["validate"])
    assert 2 == usage.value.code
    assert 1 == main(["validate", "no/such/file.yaml"])
    assert "SOP001" in capsys.readouterr().out
