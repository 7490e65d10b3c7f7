"""The shipped library as a whole: SOPs validate clean, scenarios reach every state, and
every template renders in both locales with the sample data in templates/samples.yaml.

Files are discovered, so an SOP, scenario or template is checked the moment it lands.
Pure and fast: in-memory ledgers and fake clocks, no servers.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError

from connectors.probes import check_monitors_file
from storeops.errors import StoreopsError
from storeops.ledger import Ledger, open_ledger
from storeops.loader import NOT_SOPS, load_roster, validate_paths
from storeops.roster import Roster
from storeops.runtime import BuiltinExecutor, Engine
from storeops.simulate import Scenario, SimulationResult, load_scenario, simulate
from storeops.spec import LOCALES
from storeops.templates import TemplateLibrary
from storeops.yamlsource import load_yaml
from tests.conftest import ROOT

SOPS = ROOT / "sops"
SCENARIOS = SOPS / "scenarios"
TEMPLATES = ROOT / "templates"
SAMPLES = TEMPLATES / "samples.yaml"

LIBRARY_FILES = sorted([*SOPS.glob("*.yaml"), *SOPS.glob("*.yml")])
SOP_IDS = sorted(p.stem for p in LIBRARY_FILES if p.name not in NOT_SOPS)
SCENARIO_FILES = sorted(SCENARIOS.glob("*.scenario.yaml"))
TEMPLATE_NAMES = sorted(
    {
        path.relative_to(TEMPLATES / locale).as_posix()
        for locale in LOCALES
        for path in (TEMPLATES / locale).rglob("*.j2")
    }
)


def _shown(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


@functools.cache
def _roster() -> Roster:
    roster, problems = load_roster(SOPS / "team.yaml")
    assert roster is not None, [str(p) for p in problems]
    return roster


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.name)
def test_library_file_validates_clean(path: Path) -> None:
    """No errors and no warnings, against the shipped roster, templates and monitors."""
    diagnostics, count = validate_paths(
        [path],
        roster_path=SOPS / "team.yaml",
        templates_root=TEMPLATES,
        check_monitors=check_monitors_file,
    )
    assert 1 == count
    assert [] == [str(d) for d in diagnostics]


# ---------------------------------------------------------------- scenarios


@functools.cache
def _scenarios() -> Mapping[str, list[tuple[Path, Scenario]]]:
    """Every scenario that loads, by the SOP it names (its `sop:`)."""
    found: dict[str, list[tuple[Path, Scenario]]] = {}
    for path in SCENARIO_FILES:
        try:
            scenario = load_scenario(path)
        except StoreopsError:
            continue  # reported by test_every_scenario_loads_and_names_a_shipped_sop
        found.setdefault(scenario.sop, []).append((path, scenario))
    return types.MappingProxyType(found)


def _run_scenario(scenario: Scenario) -> tuple[SimulationResult, bool]:
    """Simulate on a fresh in-memory ledger: (result, whether the hash chains verify)."""
    ledger = open_ledger(":memory:")
    try:
        result = simulate(
            scenario,
            ledger=ledger,
            sops_dir=SOPS,
            templates=TemplateLibrary(TEMPLATES),
            roster=_roster(),
        )
        return result, ledger.verify().ok
    finally:
        ledger.close()


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.name)
def test_every_scenario_loads_and_names_a_shipped_sop(path: Path) -> None:
    try:
        scenario = load_scenario(path)
    except StoreopsError as exc:
        pytest.fail(f"{_shown(path)} does not load:\n{exc}")
    assert scenario.sop in SOP_IDS, (
        f"{_shown(path)} is for SOP {scenario.sop!r}, which is not in sops/; "
        f"known: {', '.join(SOP_IDS)}"
    )
    stem = path.name.removesuffix(".scenario.yaml")
    named_for_it = stem == scenario.sop or stem.startswith((f"{scenario.sop}-", f"{scenario.sop}."))
    assert named_for_it, (
        f"{_shown(path)} is for {scenario.sop!r}; name it {scenario.sop}.scenario.yaml or "
        f"{scenario.sop}-WHAT.scenario.yaml"
    )


@pytest.mark.parametrize("sop_id", SOP_IDS)
def test_scenarios_run_cleanly_and_cover_every_state(sop_id: str) -> None:
    """Each scenario runs without problems; together they enter every state of the SOP."""
    scenarios = _scenarios().get(sop_id, [])
    if not scenarios:
        pytest.fail(
            f"SOP {sop_id!r} has no scenario; add sops/scenarios/{sop_id}.scenario.yaml (and "
            f"{sop_id}-WHAT.scenario.yaml for other paths) until every state is covered"
        )
    problems: list[str] = []
    covered: dict[str, list[str]] = {}
    states: list[str] = []
    for path, scenario in scenarios:
        try:
            result, chain_ok = _run_scenario(scenario)
        except StoreopsError as exc:
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        problems += [f"{path.name}: {problem}" for problem in result.problems]
        if not chain_ok:
            problems.append(f"{path.name}: the ledger's hash chains do not verify")
        states = result.covered + result.uncovered
        for state in result.covered:
            covered.setdefault(state, []).append(path.name)
    assert [] == problems
    uncovered = [state for state in states if state not in covered]
    assert [] == uncovered, (
        f"SOP {sop_id!r}: no scenario enters {', '.join(uncovered)} "
        f"(scenarios: {', '.join(p.name for p, _ in scenarios)}); add or extend a scenario "
        "under sops/scenarios/ that drives a run there"
    )


# ---------------------------------------------------------------- templates


@functools.cache
def _samples() -> tuple[Mapping[str, list[dict[str, Any]]], Mapping[str, int]]:
    """(contexts by template name, line in samples.yaml); keys with a dot are shared values."""
    doc, problems = load_yaml(SAMPLES)
    assert doc is not None, [str(p) for p in problems]
    assert isinstance(doc.data, dict), f"{_shown(SAMPLES)}: expected a mapping of templates"
    contexts: dict[str, list[dict[str, Any]]] = {}
    lines: dict[str, int] = {}
    for name, value in doc.data.items():
        if str(name).startswith("."):
            continue
        cases = value if isinstance(value, list) else [value]
        for index, case in enumerate(cases, start=1):
            assert isinstance(case, dict), (
                f"{_shown(SAMPLES)}:{doc.position((name,))[0]}: sample {index} of {name!r} is "
                f"{type(case).__name__}; a sample is a mapping (the template's context)"
            )
        contexts[name] = cases
        lines[name] = doc.position((name,), key=True)[0]
    return types.MappingProxyType(contexts), types.MappingProxyType(lines)


def render_problem(
    library: TemplateLibrary, name: str, locale: str, context: dict[str, Any]
) -> str | None:
    """The library's own message for a template that does not render (it names the
    template, the locale and the line), or None."""
    try:
        library.render(name, locale, context)
    except TemplateError as exc:
        return str(exc)
    return None


def test_there_are_templates_and_samples() -> None:
    assert TEMPLATE_NAMES
    assert SAMPLES.is_file()


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_template_renders_in_both_locales(name: str) -> None:
    library = TemplateLibrary(TEMPLATES)
    missing = [loc for loc in LOCALES if not library.path(name, loc).is_file()]
    assert [] == missing, (
        f"template {name!r} exists only in {', '.join(library.locales_of(name))}; create "
        + " and ".join(_shown(library.path(name, loc)) for loc in missing)
    )
    contexts, lines = _samples()
    if name not in contexts:
        pytest.fail(
            f"template {name!r} has no sample data; add a context (params, vars, steps, run, "
            f"and recipient for notify templates) under `{name}:` in {_shown(SAMPLES)}"
        )
    problems = []
    for index, context in enumerate(contexts[name], start=1):
        for locale in LOCALES:
            problem = render_problem(library, name, locale, context)
            if problem:
                problems.append(f"{problem} (sample {index}, {_shown(SAMPLES)}:{lines[name]})")
    assert [] == problems


def test_samples_are_for_existing_templates() -> None:
    contexts, lines = _samples()
    stale = [f"{name} (line {lines[name]})" for name in contexts if name not in TEMPLATE_NAMES]
    assert [] == stale, f"{_shown(SAMPLES)} has samples for templates that do not exist"


def test_a_missing_name_is_reported_with_template_and_line(tmp_path: Path) -> None:
    for locale in LOCALES:
        folder = tmp_path / locale / "broken"
        folder.mkdir(parents=True)
        (folder / "digest.md.j2").write_text(
            "{% set plan = vars.morning %}\nHello {{ recipient.name }},\n"
            "{{ plan.count }} open, {{ plan.overdue_cuont }} overdue.\n",
            encoding="utf-8",
        )
    library = TemplateLibrary(tmp_path)
    context = {"vars": {"morning": {"count": 3, "overdue_count": 1}}}
    where = "template en/broken/digest.md.j2"

    assert f"{where} line 2: UndefinedError: 'recipient' is undefined" == render_problem(
        library, "broken/digest.md.j2", "en", context
    )
    context["recipient"] = {"name": "Sam Lee"}
    assert (
        f"{where} line 3: UndefinedError: 'dict object' has no attribute 'overdue_cuont'"
        == render_problem(library, "broken/digest.md.j2", "en", context)
    )


# ---------------------------------------------------------------- daily-plan on a busy day
# The scenarios run daily-plan alone in its ledger, so its lists are empty there. Here two
# promotions are left open in the same ledger first: per-person digests, overdue first.

_PROMOTION: dict[str, Any] = {
    "sop": "promotion-prep",
    "as": "li.wei",
    "actions": {"store.inventory_levels": [{"result": {"low_count": 0, "skus": []}}]},
    "settle": "0s",
}


def _set_goals(after: str) -> dict[str, Any]:
    fields = {
        "gmv_target": 500000,
        "budget": 20000,
        "starts_at": "2026-12-11T16:00:00+00:00",
        "ends_at": "2026-12-12T15:59:59+00:00",
    }
    return {"after": after, "as": "li.wei", "done": "set_goals", "fields": fields}


def _simulate(ledger: Ledger, scenario: dict[str, Any]) -> SimulationResult:
    return simulate(
        Scenario.model_validate(scenario),
        ledger=ledger,
        sops_dir=SOPS,
        templates=TemplateLibrary(TEMPLATES),
        roster=_roster(),
    )


def test_daily_plan_gives_everyone_their_own_tasks_overdue_first() -> None:
    ledger = open_ledger(":memory:")
    try:
        # D11 has waited since 2026-11-08 12:00Z (due a day later); D12 began this morning.
        for key, start, after in (
            ("D11-2026", "2026-11-08T11:00:00Z", "1h"),
            ("D12-2026", "2026-11-10T00:30:00Z", "15m"),
        ):
            promotion = {**_PROMOTION, "start_at": start, "params": {"promo_code": key}}
            result = _simulate(ledger, {**promotion, "steps": [_set_goals(after)]})
            assert ([], "running") == (result.problems, result.status)
        day = {"sop": "daily-plan", "as": "li.wei", "start_at": "2026-11-10T01:00:00Z"}
        result = _simulate(ledger, {**day, "settle": "9h"})  # to the evening review
        assert [] == result.problems
        digests = {
            m["person"]: m["text"]
            for m in result.outbox
            if m["link"].endswith(f"/runs/{result.run_id}")
        }
        engine = Engine(
            ledger=ledger,
            sops_dir=SOPS,
            templates=TemplateLibrary(TEMPLATES),
            roster=_roster(),
            executor=BuiltinExecutor(),
        )
        review = engine.describe_task(result.run_id, "review_overdue", "zh-CN")
    finally:
        ledger.close()

    assert sorted(_roster().people) == sorted(digests)
    merchandiser = digests["chen.jing"]  # zh-CN: D11's prices are late, D12's are not yet due
    assert merchandiser.startswith("今日待办 2 项，其中逾期 1 项 · 陈静\n")
    overdue_at, d11_at, rest_at, d12_at = (
        merchandiser.index(text) for text in ("已逾期", "D11-2026", "其他待办", "D12-2026")
    )
    assert overdue_at < d11_at < rest_at < d12_at
    assert "设置活动价格" in merchandiser
    assert "制作活动主图和横幅" not in merchandiser  # the designer's, not hers
    cs_agent = digests["anna.schmidt"]  # en: English titles
    assert cs_agent.startswith("Today: 2 open tasks, 1 overdue · Anna Schmidt\n")
    assert "Prepare CS promotion scripts" in cs_agent
    assert digests["sam.lee"].startswith("Today: no open tasks · Sam Lee\n")
    # 18:00 in Shanghai: D11's four tasks are still overdue, D12's are not
    assert "现在逾期 4 项（待办共 8 项）" in review["instructions"]
    assert "D12-2026" not in review["instructions"]
