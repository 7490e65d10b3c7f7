"""Failure paths: races, crashes between steps, hostile values, and what validation catches."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storeops.errors import InvalidInputError, NotAllowedError
from storeops.expressions import Expressions
from storeops.ledger import NewEvent
from storeops.loader import Checker, load_roster
from storeops.runtime import Engine
from storeops.templates import TemplateLibrary
from storeops.yamlsource import load_yaml_text
from tests.conftest import FIXTURES, VALID

Make = Callable[..., Engine]
ALL = {0: "done"}


def kinds(engine: Engine, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in engine.ledger.events(run_id) if e.type == kind]


def test_an_action_result_survives_a_concurrent_append(make_engine: Make) -> None:
    engine = make_engine()
    wave = engine.start("order-wave-mini", {"orders": []}, actor="ann", drive=False)
    executor: Any = engine.executor
    inner = executor.run

    def run_and_race(uses: str, inputs: Any, **kw: Any) -> Any:
        # Another process writes to the run while this action is in flight.
        engine.ledger.append(wave, [NewEvent("run.note", "2026-11-09T01:00:00.000000Z", {"n": 1})])
        return inner(uses, inputs, **kw)

    executor.run = run_and_race
    engine.drive(wave)
    assert 1 == len(kinds(engine, wave, "action.succeeded"))
    assert 1 == len([c for c in executor.calls if c[0] == "builtin.echo"])
    assert ["pack"] == [t.step for t in engine.load(wave)[0].active_tasks()]


def test_parent_resumes_when_the_child_finished_but_the_parent_was_not_told(
    make_engine: Make,
) -> None:
    engine = make_engine()
    parent = engine.start("parent", {}, actor="ann")
    child = next(r.run_id for r in engine.ledger.runs() if r.parent_run == parent)
    engine._finish_parent = lambda *_a: None  # type: ignore[method-assign]  # the crash point
    engine.complete(child, "work", actor="cai")
    assert "succeeded" == engine.ledger.get_run(child).status
    assert [] == [t.step for t in engine.load(parent)[0].active_tasks()]
    fresh = make_engine(ledger=str(Path(engine.ledger.path)))  # type: ignore[attr-defined]
    fresh.drive(parent)  # a new driver after the crash
    assert ["confirm"] == [t.step for t in fresh.load(parent)[0].active_tasks()]


def test_a_call_that_cannot_start_goes_to_catch(make_engine: Make, tmp_path: Path) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    engine = make_engine(sops_dir=library)
    parent = engine.start("parent", {}, actor="ann", drive=False)
    child_file = library / "child.yaml"
    child_file.write_text(
        child_file.read_text(encoding="utf-8").replace("version: 1", "version: 2"),
        encoding="utf-8",
    )
    engine.drive(parent)
    record = engine.ledger.get_run(parent)
    assert "failed" == record.status  # catch: CallFailed -> sorry (a fail state)
    finished = kinds(engine, parent, "call.finished")
    assert "failed" == finished[0]["status"]
    assert "v1" in finished[0]["message"]
    roster, _ = load_roster(library / "team.yaml")
    checker = Checker(roster=roster, templates=TemplateLibrary(FIXTURES / "templates"))
    checker.library = library
    _loaded, problems = checker.load(library / "parent.yaml")
    assert ["SOP154"] == [p.code for p in problems]


def test_a_cancelled_branch_cancels_its_sub_run(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("race-call", {}, actor="ann")
    child = next(r.run_id for r in engine.ledger.runs() if r.parent_run == run)
    assert "running" == engine.ledger.get_run(child).status
    engine.complete(run, "quick_task", actor="ann")
    assert "succeeded" == engine.ledger.get_run(run).status
    assert "cancelled" == engine.ledger.get_run(child).status
    assert [] == [t for t in engine.tasks() if t["run"] == child]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_non_finite_numbers_are_refused(make_engine: Make, value: str) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    with pytest.raises(InvalidInputError, match="finite"):
        engine.complete(
            run, "draft", actor="bo", fields={"title": "x", "price": value}, checklist=ALL
        )


def test_checklist_answers_are_done_or_na_with_a_reason(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    with pytest.raises(InvalidInputError, match="answered 'no'"):
        engine.complete(
            run,
            "draft",
            actor="bo",
            fields={"title": "x", "price": 1},
            checklist={1: "no", 2: "done"},
        )


def test_steps_record_belongs_to_one_visit(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    engine.complete(run, "draft", actor="cai", fields={"title": "x", "price": 1}, checklist=ALL)
    engine.complete(run, "approve", actor="ann", reject=True, reason="price too low")
    engine.complete(run, "draft", actor="cai", fields={"title": "y", "price": 2}, checklist=ALL)
    engine.complete(run, "approve", actor="ann")
    record = engine.load(run)[0].steps["approve"]
    assert 2 == record["visit"]
    assert "reason" not in record
    with pytest.raises(NotAllowedError):
        engine.complete(run, "approve", actor="cai")


def _check(text: str) -> list[str]:
    doc, problems = load_yaml_text(text, "x.yaml")
    assert doc is not None, problems
    roster, _ = load_roster(VALID / "team.yaml")
    checker = Checker(roster=roster, templates=TemplateLibrary(FIXTURES / "templates"))
    return [f"{d.code} {d.message}" for d in checker.load_doc(doc, stem="x")[1]]


BASE = """id: x
version: 1
title: X
params: {n: {type: int, default: 1}}
roles: [lead]
start: first
states:
  first: {type: task, role: lead, title: T, on_timeout: fail, due: DUE, next: pick}
  pick:
    type: choice
    choices: [{when: "WHEN", next: done}]
    default: done
  done: {type: succeed}
"""


def test_validation_refuses_absurd_durations_and_hostile_expressions() -> None:
    found = _check(BASE.replace("DUE", "99999999w").replace("WHEN", "true"))
    assert any(f.startswith("SOP102") and "10 years" in f for f in found), found
    assert [] == _check(BASE.replace("DUE", "1h").replace("WHEN", "(10 ** 9) ** (10 ** 9) > 1"))
    with pytest.raises(Exception, match="exponent"):
        Expressions().evaluate("(10 ** 9) ** (10 ** 9) > 1", {})
    assert [] == _check(BASE.replace("DUE", "1h").replace("WHEN", "params.n ** 2 > 1"))


def test_business_key_may_read_params_only_and_render_templates_are_checked() -> None:
    text = (
        BASE.replace("DUE", "1h")
        .replace("WHEN", "true")
        .replace("start: first", "business_key: run.sop\nstart: first")
    )
    assert any(f.startswith("SOP133") and "'run'" in f for f in _check(text))
    text = (
        BASE.replace("DUE", "1h")
        .replace("WHEN", "true")
        .replace(
            "  done: {type: succeed}",
            "  done: {type: succeed}\n  draw:\n    type: action\n    uses: render.template\n"
            "    with: {template: fx/nope.md.j2}\n    next: done\n",
        )
        .replace("default: done", "default: draw")
    )
    assert any(f.startswith("SOP130") for f in _check(text))


def test_map_stops_starting_items_once_failures_exceed_the_budget(make_engine: Make) -> None:
    failures = [{"fail": "NotFound", "retryable": False}]
    engine = make_engine(actions={"store.fulfil_order": failures})
    orders = [{"id": f"o{i}", "value": 1} for i in range(10)]
    run = engine.start("order-wave-mini", {"orders": orders}, actor="ann")
    attempts = [c for c in engine.executor.calls if c[0] == "store.fulfil_order"]  # type: ignore[attr-defined]
    assert len(attempts) <= 3  # 2 in flight at most, and the budget is 1 failure
    assert "failed" == engine.ledger.get_run(run).status  # on_fail: wave_failed
    assert "ItemsFailed" not in str(kinds(engine, run, "run.finished"))
    assert "WaveFailed" == kinds(engine, run, "run.finished")[0]["error"]


def test_two_drivers_deliver_a_notification_once(make_engine: Make) -> None:
    import threading

    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    engine.complete(run, "draft", actor="cai", fields={"title": "x", "price": 1}, checklist=ALL)
    engine.complete(run, "approve", actor="ann", drive=False)
    engine.complete(run, "approve", actor="bo", drive=False)  # publish (notify) is next
    path = str(engine.ledger.path)  # type: ignore[attr-defined]
    drivers = [make_engine(ledger=path) for _ in range(2)]
    threads = [threading.Thread(target=d.drive, args=(run,)) for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert "succeeded" == engine.ledger.get_run(run).status
    assert 1 == len(kinds(engine, run, "notification.sent"))
    people = kinds(engine, run, "notification.sent")[0]["people"]
    sent = [m for d in drivers for m in d.outbox.messages if m["link"].endswith(run)]  # type: ignore[attr-defined]
    assert len(people) == len(sent)  # one message per person, whichever driver sent it


def test_about_may_use_the_run_titles_may_not_and_typos_are_named() -> None:
    text = BASE.replace("DUE", "1h").replace("WHEN", "true")
    good = text.replace(
        "title: T,", 'title: T, about: {en: "n={{ params.n }}", zh-CN: "第 {{ params.n }} 次"},'
    )
    assert [] == _check(good)
    typo = good.replace("{{ params.n }} 次", "{{ params.m }} 次")
    found = _check(typo)
    assert 1 == len(found), found
    assert found[0].startswith("SOP133")
    assert "params.m" in found[0]
    assert found[0].endswith("known: n")
    in_title = text.replace("title: T,", 'title: "T {{ params.n }}",')
    assert ["SOP137"] == [f.split()[0] for f in _check(in_title)]
