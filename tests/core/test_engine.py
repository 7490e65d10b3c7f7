"""Run semantics end to end through the Engine: people, timers, joins, maps, retries, calls.

Real SQLite ledger files, a fake clock, scripted connector results (no network here: the
store connectors arrive with issue 4).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storeops.errors import (
    AlreadyCompletedError,
    InvalidInputError,
    NotAllowedError,
    OperationError,
    StepNotActiveError,
)
from storeops.ledger import NewEvent
from storeops.machine import idempotency_key
from storeops.runtime import BuiltinExecutor, Engine
from tests.conftest import HOUR, MINUTE, T0, VALID

Make = Callable[..., Engine]
ALL = {0: "done"}  # tick every checklist item


def types(engine: Engine, run_id: str) -> list[str]:
    return [e.type for e in engine.ledger.events(run_id)]


def events(engine: Engine, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in engine.ledger.events(run_id) if e.type == kind]


def tick(engine: Engine, run_id: str, us: int) -> None:
    """Move the fake clock forward, stopping at every timer on the way (as time would)."""
    clock = engine.clock
    until = clock.now + us  # type: ignore[attr-defined]
    while True:
        wake = engine.drive(run_id).wake_at()
        if wake is None or wake > until:
            break
        clock.now = max(clock.now, wake)  # type: ignore[attr-defined]
    clock.now = until  # type: ignore[attr-defined]
    engine.drive(run_id)


def open_steps(engine: Engine, run_id: str) -> list[str]:
    run, _head, _stored = engine.load(run_id)
    return [t.step for t in run.active_tasks()]


def status(engine: Engine, run_id: str) -> str:
    return engine.ledger.get_run(run_id).status


# ---------------------------------------------------------------- people and approvals


def test_four_eyes_n_of_m_and_reject_loop(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    draft = {"title": "Green tea 250 g", "price": "39.90"}
    engine.complete(run, "draft", actor="bo", fields=draft, checklist={1: "done", 2: "done"})
    with pytest.raises(NotAllowedError, match="four-eyes"):
        engine.complete(run, "approve", actor="bo")
    engine.complete(run, "approve", actor="ann")
    assert ["approve"] == open_steps(engine, run)  # 2 approvals needed
    with pytest.raises(AlreadyCompletedError):
        engine.complete(run, "approve", actor="ann")
    with pytest.raises(InvalidInputError, match="reason"):
        engine.complete(run, "approve", actor="fay", reject=True, reason=" ")
    engine.complete(run, "approve", actor="fay", reject=True, reason="price too low")
    assert ["draft"] == open_steps(engine, run)  # a rejection goes back to the draft
    engine.complete(run, "draft", actor="cai", fields=draft, checklist=ALL)
    engine.complete(run, "approve", actor="ann")
    engine.complete(run, "approve", actor="bo")  # bo did not draft this time
    assert "succeeded" == status(engine, run)
    refused = events(engine, run, "task.refused")
    assert ["not_allowed", "already"] == [r["reason"] for r in refused]
    sent = events(engine, run, "notification.sent")[0]
    assert {"ann", "bo", "cai", "fay"} == set(sent["people"])
    assert len(sent["digests"]["bo"]) == 64
    assert engine.ledger.verify().ok


def test_form_checklist_and_evidence_are_checked(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    with pytest.raises(InvalidInputError, match="needs price"):
        engine.complete(run, "draft", actor="bo", fields={"title": "x"}, checklist=ALL)
    with pytest.raises(InvalidInputError, match="expected a number"):
        engine.complete(
            run, "draft", actor="bo", fields={"title": "x", "price": "cheap"}, checklist=ALL
        )
    with pytest.raises(InvalidInputError, match="below the minimum"):
        engine.complete(
            run, "draft", actor="bo", fields={"title": "x", "price": "0"}, checklist=ALL
        )
    with pytest.raises(InvalidInputError, match="no field 'colour'"):
        engine.complete(
            run, "draft", actor="bo", fields={"title": "x", "price": 1, "colour": 2}, checklist=ALL
        )
    with pytest.raises(InvalidInputError, match="checklist item 2"):
        engine.complete(
            run, "draft", actor="bo", fields={"title": "x", "price": 1}, checklist={1: "done"}
        )
    with pytest.raises(InvalidInputError, match="n/a needs a reason"):
        engine.complete(
            run,
            "draft",
            actor="bo",
            fields={"title": "x", "price": 1},
            checklist={1: "done", 2: "n/a"},
        )
    with pytest.raises(NotAllowedError, match="needs role clerk"):
        engine.complete(run, "draft", actor="dee", fields={"title": "x", "price": 1}, checklist=ALL)
    with pytest.raises(StepNotActiveError, match="open steps: draft"):
        engine.complete(run, "approve", actor="ann")
    engine.complete(
        run,
        "draft",
        actor="bo",
        fields={"title": "x", "price": 1},
        checklist={1: "done", 2: "done", 3: "n/a: no video"},
    )
    done = events(engine, run, "task.completed")[0]
    assert {"title": "x", "price": 1.0} == done["fields"]
    assert {"1": "done", "2": "done", "3": "n/a: no video"} == done["checklist"]
    assert "clerk" == done["role"]


def test_refusals_are_recorded_in_the_ledger(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    with pytest.raises(NotAllowedError):
        engine.complete(run, "draft", actor="dee", fields={"title": "x", "price": 1}, checklist=ALL)
    refused = events(engine, run, "task.refused")
    assert 1 == len(refused)
    assert "dee" == refused[0]["actor"]
    assert "needs role clerk" in refused[0]["message"]


# ---------------------------------------------------------------- timers


def test_reminders_escalation_and_timeout_goto_fire_on_time(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    engine.complete(run, "draft", actor="cai", fields={"title": "t", "price": 2}, checklist=ALL)
    entered = T0
    tick(engine, run, 10 * HOUR)
    reminded = [e for e in engine.ledger.events(run) if e.type == "task.reminded"]
    assert [1, 2] == [e.data["number"] for e in reminded]  # max: 2
    from storeops.durations import iso_to_us

    assert [entered + HOUR, entered + 2 * HOUR] == [iso_to_us(e.at) for e in reminded]
    escalated = [e for e in engine.ledger.events(run) if e.type == "task.escalated"]
    assert ["clerk"] == [e.data["to"] for e in escalated]
    assert entered + 3 * HOUR == iso_to_us(escalated[0].at)
    assert ["approve"] != open_steps(engine, run)
    assert "failed" == status(engine, run)  # timeout goto: expired (a fail state)
    timed_out = events(engine, run, "task.timed_out")
    assert [{"step": "approve", "visit": 1, "policy": "goto:expired"}] == timed_out
    overdue = events(engine, run, "task.overdue")
    assert 1 == len(overdue)


def test_a_steps_time_limits_may_come_from_the_run(make_engine: Make) -> None:
    from storeops.durations import iso_to_us

    engine = make_engine()
    run = engine.start("sla", {"reply_within": "1h", "nudge_every": "20m"}, actor="ann")
    assigned = events(engine, run, "task.assigned")
    assert T0 + HOUR == iso_to_us(assigned[0]["due_at"])
    assert T0 + HOUR == iso_to_us(engine.tasks()[0]["due_at"])
    tick(engine, run, 3 * HOUR)
    at = {e.type: iso_to_us(e.at) for e in engine.ledger.events(run)}
    reminded = [iso_to_us(e.at) for e in engine.ledger.events(run) if e.type == "task.reminded"]
    assert [T0 + 20 * MINUTE, T0 + 40 * MINUTE] == reminded  # max: 2
    assert T0 + HOUR == at["task.escalated"] == at["task.overdue"]
    assert T0 + 2 * HOUR == at["task.timed_out"]
    assert "failed" == status(engine, run)
    other = engine.start("sla", {}, actor="ann")  # the defaults: 30m, nudges every 10m
    assert T0 + 3 * HOUR + 30 * MINUTE == iso_to_us(
        events(engine, other, "task.assigned")[0]["due_at"]
    )


def test_a_runner_back_from_downtime_sends_one_reminder_not_all_it_missed(
    make_engine: Make,
) -> None:
    from storeops.durations import iso_to_us

    engine = make_engine()
    run = engine.start("sla", {"reply_within": "1h", "nudge_every": "10m"}, actor="ann")
    engine.clock.now = T0 + 35 * MINUTE  # type: ignore[attr-defined]  # nobody drove it
    engine.drive(run)
    reminded = [iso_to_us(e.at) for e in engine.ledger.events(run) if e.type == "task.reminded"]
    assert [T0 + 35 * MINUTE] == reminded
    assert T0 + 45 * MINUTE == engine.drive(run).wake_at()  # the next one, `every` later


def test_a_duration_expression_giving_nothing_fails_the_step_clearly(
    make_engine: Make, tmp_path: Path
) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    text = (library / "sla.yaml").read_text(encoding="utf-8")
    nothing = "due: params.reply_within if false else none"
    (library / "sla.yaml").write_text(text.replace("due: params.reply_within", nothing))
    engine = make_engine(sops_dir=library)
    run = engine.start("sla", {}, actor="ann")
    assert "failed" == status(engine, run)
    assert "gave no duration" in events(engine, run, "run.finished")[0]["message"]


def test_a_late_failure_of_an_attempt_given_up_on_changes_nothing(make_engine: Make) -> None:
    """Driver A's attempt 1 hangs past its lease; B retries it, fails (retryable) and
    attempt 2 is under way when A's late, final-looking failure arrives: attempt 2 decides."""
    engine = make_engine()
    run = engine.start("store-writes", {"order": "#1"}, actor="ann", drive=False)
    at = "2026-11-09T01:00:00.000000Z"
    ref = {"step": "reserve", "visit": 1}

    def record(kind: str, **data: Any) -> None:
        engine.ledger.append(run, [NewEvent(kind, at, {**ref, **data})])

    engine.ledger.append(run, [NewEvent("state.entered", at, {"scope": "", "state": "reserve"})])
    record("action.attempted", attempt=1, uses="http.post", inputs={})
    record("action.failed", attempt=1, error="Unavailable", message="B: 503", retryable=True)
    record("action.attempted", attempt=2, uses="http.post", inputs={})
    record("action.failed", attempt=1, error="Invalid", message="A: late", retryable=False)
    loaded = engine.load(run)[0]
    assert "running" == loaded.status
    token = loaded.token("reserve")
    assert token is not None
    assert (2, None) == (token.attempt, token.outcome)  # A's answer changed nothing
    record("action.succeeded", attempt=2, result={"ok": True})
    done = engine.load(run)[0].token("reserve")
    assert done is not None
    assert ("next", {"ok": True}) == (done.outcome, done.result)  # the write that happened


QUICK_CHILD = """id: quick-child
version: 1
title: Finishes in its first drive
params: {amount: {type: int, required: true}}
roles: [lead]
start: work
states:
  work: {type: action, uses: builtin.echo, with: {x: "{{ params.amount }}"}, next: done}
  done: {type: succeed, output: {doubled: "{{ params.amount * 2 }}"}}
"""

QUICK_PARENT = """id: quick-parent
version: 1
title: Calls a child that finishes at once
roles: [lead]
start: call_child
states:
  call_child: {type: call, sop: quick-child, version: 1, with: {amount: 21}, save_as: out,
               next: done}
  done: {type: succeed, output: {doubled: "{{ vars.out.doubled }}"}}
"""


def test_a_child_that_finishes_at_once_is_collected_once(make_engine: Make, tmp_path: Path) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    (library / "quick-child.yaml").write_text(QUICK_CHILD, encoding="utf-8")
    (library / "quick-parent.yaml").write_text(QUICK_PARENT, encoding="utf-8")
    engine = make_engine(sops_dir=library)
    run = engine.start("quick-parent", {}, actor="ann")
    assert "succeeded" == status(engine, run)
    recorded = types(engine, run)
    assert 1 == recorded.count("call.started")
    assert 1 == recorded.count("call.finished")  # once, not again by the outer pass
    assert "run.finished" == recorded[-1]


TWO_FAILURES = """id: two-failures
version: 1
title: Two branches fail in the same pass
roles: [lead]
start: both
states:
  both:
    type: parallel
    join: all
    next: done
    branches:
      promos:
        start: pause
        states:
          pause:
            {type: action, uses: http.post, with: {webhook: p}, catch: {Error: why_pause}, next: ok}
          why_pause:
            type: action
            uses: builtin.echo
            with: {seen: "{{ vars.last_error.message }}"}
            save_as: pause_error
            next: ok
          ok: {type: succeed}
      orders:
        start: hold
        states:
          hold:
            {type: action, uses: store.hold_order, with: {order_id: "1"}, catch: {Error: why_hold},
             next: held}
          why_hold:
            type: action
            uses: builtin.echo
            with: {seen: "{{ vars.last_error.message }}"}
            save_as: hold_error
            next: held
          held: {type: succeed}
  done:
    type: succeed
    output: {pause: "{{ vars.pause_error.seen }}", hold: "{{ vars.hold_error.seen }}"}
"""


def test_branches_failing_at_once_each_see_their_own_error(
    make_engine: Make, tmp_path: Path
) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    (library / "two-failures.yaml").write_text(TWO_FAILURES, encoding="utf-8")
    engine = make_engine(
        sops_dir=library,
        actions={
            "http.post": [{"fail": "NotConfigured", "message": "no promos webhook"}],
            "store.hold_order": [{"fail": "Unavailable", "message": "store 503"}],
        },
    )
    run = engine.start("two-failures", {}, actor="ann")
    assert "succeeded" == status(engine, run)
    output = events(engine, run, "run.finished")[0]["output"]
    assert {"pause": "no promos webhook", "hold": "store 503"} == output
    # The same history read back from the ledger after both branches caught their errors
    # (a driver that stopped there): each branch still reads its own error.
    recorded = engine.ledger.events(run)
    cut = next(e.seq for e in recorded if e.data.get("state") == "why_hold")
    again = engine.start("two-failures", {}, actor="ann", drive=False)
    engine.ledger.append(
        again, [NewEvent(e.type, e.at, e.data) for e in recorded if 1 < e.seq <= cut]
    )
    engine.drive(again)
    output = events(engine, again, "run.finished")[0]["output"]
    assert {"pause": "no promos webhook", "hold": "store 503"} == output


def test_a_run_that_cannot_be_driven_does_not_stop_the_sweep(make_engine: Make) -> None:
    engine = make_engine()
    broken = engine.start("cadence", {"every": "10m"}, actor="ann", drive=False)
    # a record this version cannot replay (a state its definition does not have)
    gone = NewEvent("state.entered", "2026-11-09T01:00:00.000000Z", {"scope": "", "state": "gone"})
    engine.ledger.append(broken, [gone])
    healthy = engine.start("cadence", {"every": "10m"}, actor="ann", drive=False)
    found = engine.recover()
    assert healthy in found
    assert "wait.started" in types(engine, healthy)  # driven although another run broke
    assert broken in engine.stuck
    assert "gone" in engine.stuck[broken]


def test_a_time_limit_the_run_cannot_give_fails_the_step_clearly(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("sla", {"reply_within": "0s"}, actor="ann")
    assert "failed" == status(engine, run)
    finished = events(engine, run, "run.finished")
    assert "Invalid" == finished[0]["error"]
    assert "params.reply_within gave 0.0, not a positive duration" in finished[0]["message"]
    assert [] == events(engine, run, "task.assigned")  # never offered with no time limit


def test_escalation_lets_the_escalated_role_act(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")
    engine.complete(run, "draft", actor="bo", fields={"title": "t", "price": 2}, checklist=ALL)
    with pytest.raises(NotAllowedError):
        engine.complete(run, "approve", actor="cai")
    tick(engine, run, 3 * HOUR)
    engine.complete(run, "approve", actor="cai")  # clerk holds the escalated step now
    engine.complete(run, "approve", actor="ann")
    assert "succeeded" == status(engine, run)


def test_timeout_skip_continues(make_engine: Make) -> None:
    engine = make_engine(actions={"store.fulfil_order": [{"result": {"ok": True}}]})
    run = engine.start("order-wave-mini", {"orders": []}, actor="ann")
    assert ["pack"] == open_steps(engine, run)
    tick(engine, run, 59 * MINUTE)
    assert ["pack"] == open_steps(engine, run)
    tick(engine, run, MINUTE)
    assert "succeeded" == status(engine, run)


# ---------------------------------------------------------------- parallel, map, wait


def test_parallel_any_cancels_the_other_branch_and_join_n_tolerates_a_failure(
    make_engine: Make,
) -> None:
    engine = make_engine()
    run = engine.start("branches", {}, actor="ann")
    assert {"a_task", "b_task"} == set(open_steps(engine, run))
    engine.complete(run, "b_task", actor="dee")
    assert {"x_task", "y_task"} == set(open_steps(engine, run))  # a_task was cancelled
    cancelled = [d for d in events(engine, run, "scope.finished") if d["status"] == "cancelled"]
    assert ["/first_any.a"] == [d["scope"] for d in cancelled]
    with pytest.raises(StepNotActiveError):
        engine.complete(run, "a_task", actor="cai")
    engine.complete(run, "y_task", actor="ann")
    assert ["x_task"] == open_steps(engine, run)  # z failed; 2 of 3 still possible
    tick(engine, run, HOUR)  # x_task times out with skip -> x succeeds
    run_state, _h, _s = engine.load(run)
    assert "pause" == run_state.tokens[""].state
    tick(engine, run, 15 * MINUTE)
    assert "succeeded" == status(engine, run)


def test_parallel_join_n_fails_over_to_on_fail(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("branches", {}, actor="ann")
    engine.complete(run, "a_task", actor="cai")
    tick(engine, run, HOUR)  # y_task times out with fail; z failed: 2 of 3 impossible
    assert ["rescue"] == open_steps(engine, run)


def test_map_respects_its_concurrency_bound_and_collects_results(make_engine: Make) -> None:
    outcomes = [
        {"result": {"shipped": 1}},
        {"fail": "Unavailable", "message": "503"},
        {"result": {"shipped": 2}},
        {"fail": "NotFound", "retryable": False},
        {"result": {"shipped": 3}},
    ]
    engine = make_engine(actions={"store.fulfil_order": outcomes})
    orders = [{"id": f"o{i}", "value": 100 * i} for i in range(1, 6)]
    run = engine.start("order-wave-mini", {"orders": orders}, actor="ann")
    tick(engine, run, MINUTE)  # o2's retry is due after its backoff
    stored = engine.ledger.events(run)
    active = peak = 0
    for event in stored:
        if event.type == "state.entered" and event.data["state"] == "risk":
            active += 1
            peak = max(peak, active)
        if event.type == "scope.finished":
            active -= 1
    assert 2 == peak  # max_concurrency: 2
    calls = [c for c in engine.executor.calls if c[0] == "store.fulfil_order"]  # type: ignore[attr-defined]
    keys = {inputs["order_id"]: key for _uses, inputs, key in calls}
    assert 5 == len(keys)
    assert {"note": "wave 1", "order_id": "o2"} == next(
        c[1] for c in calls if c[1]["order_id"] == "o2"
    )
    assert len({c[2] for c in calls if c[1]["order_id"] == "o2"}) == 1  # retries share a key
    results = engine.load(run)[0].vars["results"]
    assert ["succeeded", "succeeded", "succeeded", "failed", "succeeded"] == [
        r["status"] for r in results
    ]
    assert {"shipped": 1} == results[0]["vars"]["shipped"]
    assert ["pack"] == open_steps(engine, run)  # one failure is tolerated


class _Batching:
    """An executor with `run_many`, as the connector executor has: records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.single = 0

    def run(self, uses: str, inputs: Any, *, idempotency_key: str, timeout: float) -> Any:
        if uses.startswith("builtin."):
            return BuiltinExecutor().run(
                uses, inputs, idempotency_key=idempotency_key, timeout=timeout
            )
        self.single += 1
        result = self.run_many([(uses, inputs, idempotency_key, timeout)])[0]
        if isinstance(result, OperationError):
            raise result
        return result

    def run_many(self, calls: list[tuple[str, Any, str, float]]) -> list[Any]:
        self.batches.append([key for _uses, _inputs, key, _timeout in calls])
        return [
            OperationError("Unavailable", "try later", retryable=True)
            if inputs["order_id"] == "o3" and key.endswith("/1") and len(self.batches) < 3
            else {"shipped": inputs["order_id"]}
            for _uses, inputs, key, _timeout in calls
        ]


def test_map_items_run_in_batches_within_the_concurrency_bound(make_engine: Make) -> None:
    engine = make_engine()
    batching = _Batching()
    engine.executor = batching
    orders = [{"id": f"o{i}", "value": 1} for i in range(7)]
    run = engine.start("order-wave-mini", {"orders": orders}, actor="ann")
    engine.clock.now += HOUR  # type: ignore[attr-defined]  # past o3's retry backoff
    engine.drive(run)
    assert max(len(b) for b in batching.batches) == 2  # the map's max_concurrency
    assert len(batching.batches) - batching.single >= 2  # real batches, not only singles
    keys = [k for b in batching.batches for k in b]
    assert 8 == len(keys)  # seven orders, o3 twice (its first attempt failed)
    assert 7 == len(set(keys))  # the retry reused o3's key
    succeeded = events(engine, run, "action.succeeded")
    shipped = sorted(e["result"]["shipped"] for e in succeeded if "shipped" in e["result"])
    assert [f"o{i}" for i in range(7)] == shipped
    assert ["pack"] == [t.step for t in engine.load(run)[0].active_tasks()]


def test_map_item_approval_is_addressed_by_index(make_engine: Make) -> None:
    engine = make_engine(actions={"store.fulfil_order": [{"result": {}}]})
    orders = [{"id": "a", "value": 5}, {"id": "b", "value": 5000}]
    run = engine.start("order-wave-mini", {"orders": orders}, actor="ann")
    assert ["review[1]"] == open_steps(engine, run)
    engine.complete(run, "review[1]", actor="dee", reject=True, reason="fraud pattern")
    assert ["pack"] == open_steps(engine, run)
    results = engine.load(run)[0].vars["results"]
    assert "Held" == results[1]["error"]["error"]


# ---------------------------------------------------------------- actions


def test_retry_backoff_honours_retry_after_then_catch(make_engine: Make) -> None:
    outcomes = [
        {"fail": "RateLimited", "retry_after": 30},
        {"fail": "Unavailable"},
        {"fail": "Unavailable"},
    ]
    engine = make_engine(actions={"store.fulfil_order": outcomes})
    run = engine.start("order-wave-mini", {"orders": [{"id": "x", "value": 1}]}, actor="ann")
    attempts = [e for e in engine.ledger.events(run) if e.type == "action.attempted"]
    assert 2 == len(attempts)  # fetch + first fulfil; the retry waits for its time
    tick(engine, run, 29 * 1_000_000)
    assert 2 == len([t for t in types(engine, run) if t == "action.attempted"])
    tick(engine, run, 1_000_000)
    assert 3 == len([t for t in types(engine, run) if t == "action.attempted"])
    tick(engine, run, MINUTE)
    failed = events(engine, run, "action.failed")
    assert [1, 2, 3] == [f["attempt"] for f in failed]
    assert ["pack"] == open_steps(engine, run)  # exhausted -> item failed, tolerated


def test_crashed_action_is_rerun_with_the_same_idempotency_key(make_engine: Make) -> None:
    engine = make_engine(actions={"store.fulfil_order": [{"result": {"ok": 1}}]})
    run = engine.start("approvals", {}, actor="ann")  # any run id will do for the key
    key = idempotency_key(run, "fulfil[0]", 1)
    assert key == idempotency_key(run, "fulfil[0]", 1)
    assert key != idempotency_key(run, "fulfil[0]", 2)
    assert f"{run}/fulfil[0]/1" == key  # readable: leads from the store back to the ledger

    engine2 = make_engine(actions={"store.fulfil_order": [{"result": {"ok": 1}}]})
    wave = engine2.start(
        "order-wave-mini", {"orders": [{"id": "x", "value": 1}]}, actor="ann", drive=False
    )
    # A driver records fetch's attempt and then dies before the result is written.
    head = engine2.ledger.get_run(wave).head_seq
    engine2.ledger.append(
        wave,
        [
            NewEvent(
                "state.entered", "2026-11-09T01:00:00.000000Z", {"scope": "", "state": "fetch"}
            ),
            NewEvent(
                "action.attempted",
                "2026-11-09T01:00:00.000000Z",
                {
                    "step": "fetch",
                    "visit": 1,
                    "attempt": 1,
                    "uses": "builtin.echo",
                    "inputs": {"orders": [{"id": "x", "value": 1}]},
                    "idempotency_key": idempotency_key(wave, "fetch", 1),
                },
            ),
        ],
        expected_seq=head,
    )
    engine2.clock.now += 10 * MINUTE  # type: ignore[attr-defined]  # past timeout + grace
    engine2.drive(wave)
    attempts = events(engine2, wave, "action.attempted")
    assert [1, 1] == [a["attempt"] for a in attempts[:2]]
    assert attempts[0]["idempotency_key"] == attempts[1]["idempotency_key"]
    assert 1 == len(events(engine2, wave, "action.succeeded")) - 1  # fetch once, fulfil once


def test_action_in_flight_elsewhere_is_left_to_its_driver(make_engine: Make) -> None:
    engine = make_engine()
    wave = engine.start("order-wave-mini", {"orders": []}, actor="ann", drive=False)
    head = engine.ledger.get_run(wave).head_seq
    engine.ledger.append(
        wave,
        [
            NewEvent(
                "state.entered", "2026-11-09T01:00:00.000000Z", {"scope": "", "state": "fetch"}
            ),
            NewEvent(
                "action.attempted",
                "2026-11-09T01:00:00.000000Z",
                {"step": "fetch", "visit": 1, "attempt": 1, "inputs": {}, "uses": "builtin.echo"},
            ),
        ],
        expected_seq=head,
    )
    engine.drive(wave)  # within the action's timeout: another driver may still be running it
    assert 1 == len(events(engine, wave, "action.attempted"))


# ---------------------------------------------------------------- calls and pinning


def test_call_runs_a_pinned_child_and_saves_its_output(make_engine: Make) -> None:
    engine = make_engine()
    parent = engine.start("parent", {}, actor="ann")
    children = [r for r in engine.ledger.runs() if r.parent_run == parent]
    assert 1 == len(children)
    child = children[0].run_id
    assert ["work"] == open_steps(engine, child)
    engine.complete(child, "work", actor="cai")
    assert "succeeded" == status(engine, child)
    assert ["confirm"] == open_steps(engine, parent)
    assert {"doubled": 84} == engine.load(parent)[0].vars["child_out"]
    engine.complete(parent, "confirm", actor="ann")
    assert "succeeded" == status(engine, parent)


def test_runs_replay_against_the_definition_they_started_with(
    make_engine: Make, tmp_path: Path
) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    engine = make_engine(sops_dir=library)
    run = engine.start("approvals", {}, actor="ann")
    text = (library / "approvals.yaml").read_text(encoding="utf-8")
    (library / "approvals.yaml").write_text(
        text.replace("approvals: 2", "approvals: 1").replace("version: 2", "version: 3"),
        encoding="utf-8",
    )
    engine._definitions.clear()  # force a reload from the ledger's stored bundle
    engine.complete(run, "draft", actor="cai", fields={"title": "t", "price": 2}, checklist=ALL)
    engine.complete(run, "approve", actor="ann")
    assert ["approve"] == open_steps(engine, run)  # still needs two: pinned to v2
    assert 2 == engine.load(run)[0].sop.version
    fresh = engine.start("approvals", {}, actor="ann")
    assert 3 == engine.load(fresh)[0].sop.version


def test_unknown_person_and_bad_params_are_clear(make_engine: Make) -> None:
    engine = make_engine()
    with pytest.raises(InvalidInputError, match="needs orders"):
        engine.start("order-wave-mini", {}, actor="ann")
    run = engine.start("approvals", {}, actor="ann")
    with pytest.raises(NotAllowedError, match="not in the roster"):
        engine.complete(run, "draft", actor="mallory", checklist=ALL)


def test_timers_fire_after_a_restart_through_the_ledgers_wake_times(
    make_engine: Make, tmp_path: Path
) -> None:
    first = make_engine()
    run = first.start("approvals", {}, actor="ann")
    first.complete(run, "draft", actor="cai", fields={"title": "t", "price": 2}, checklist=ALL)
    assert first.next_wake() == T0 + HOUR  # the first reminder
    path = str(first.ledger.path)  # type: ignore[attr-defined]
    first.ledger.close()  # every process stops

    second = make_engine(ledger=path)
    second.clock.now = T0 + 59 * MINUTE  # type: ignore[attr-defined]
    assert [] == second.tick()
    second.clock.now = T0 + HOUR  # type: ignore[attr-defined]
    assert [run] == second.tick()
    assert [1] == [e["number"] for e in events(second, run, "task.reminded")]
    assert second.next_wake() == T0 + 2 * HOUR


def test_recover_finds_runs_from_their_events_even_when_the_wake_hint_is_lost(
    make_engine: Make,
) -> None:
    engine = make_engine()
    stuck = engine.start("approvals", {}, actor="ann", drive=False)  # nobody drove it
    waiting = engine.start("approvals", {}, actor="ann")  # a person has the next move
    engine.ledger.set_wake(stuck, None)  # the hint is lost (a bug, a hand-edited table)
    engine.ledger.set_wake(waiting, None)
    assert [] == engine.tick()  # the wake table alone cannot see them
    assert [stuck] == engine.recover(drive=False)
    assert [] == [t.step for t in engine.load(stuck)[0].active_tasks()]  # only listed
    assert [stuck] == engine.recover()
    assert ["draft"] == [t.step for t in engine.load(stuck)[0].active_tasks()]
    assert [] == engine.recover()  # nothing is due now; wake times rewritten from events
    wakes = [engine.load(r)[0].wake_at() for r in (stuck, waiting)]
    assert None not in wakes
    assert engine.next_wake() == min(w for w in wakes if w is not None)  # timers are back


def test_ledger_operations_and_the_recipient_of_a_notice(make_engine: Make) -> None:
    engine = make_engine()
    waiting = engine.start("approvals", {}, actor="ann")  # cai/bo (clerk) must draft
    run = engine.start("digest", {"target": waiting}, actor="ann")
    assert "succeeded" == engine.ledger.get_run(run).status
    saved = {e["name"]: e["value"] for e in events(engine, run, "vars.saved")}
    assert 1 == saved["open"]["count"]
    assert ["draft"] == [t["step"] for t in saved["open"]["by_person"]["cai"]]
    assert waiting == saved["history"]["run"]
    assert any("run started by ann" in line for line in saved["history"]["lines"])
    told = {m["person"]: m["text"] for m in engine.outbox.messages}  # type: ignore[attr-defined]
    assert "Ann: 1 open task(s)" == told["ann"]
    assert "薄：共 1 项待办" == told["bo"]
    missing = engine.start("digest", {"target": "no-such-run"}, actor="ann")
    assert "succeeded" == engine.ledger.get_run(missing).status  # NotFound was caught


def test_a_wait_can_take_its_duration_from_a_param(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("cadence", {"every": "10m"}, actor="ann")
    assert [] == engine.tick()
    engine.clock.now += 10 * MINUTE  # type: ignore[attr-defined]
    engine.tick()
    assert 1 == len(events(engine, run, "action.succeeded"))
    engine.clock.now += 9 * MINUTE  # type: ignore[attr-defined]
    engine.tick()
    assert "running" == engine.ledger.get_run(run).status  # the second wait is 10m too
    engine.clock.now += MINUTE  # type: ignore[attr-defined]
    engine.tick()
    assert "succeeded" == engine.ledger.get_run(run).status
    waits = [e["until"] - e_at for e, e_at in _wait_spans(engine, run)]
    assert [10 * MINUTE, 10 * MINUTE] == waits


def _wait_spans(engine: Engine, run: str) -> list[tuple[dict[str, Any], int]]:
    from storeops.durations import iso_to_us

    return [
        (e.data, iso_to_us(e.at)) for e in engine.ledger.events(run) if e.type == "wait.started"
    ]


def test_claiming_and_reassigning_a_step(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="ann")  # draft: role clerk (bo, cai)
    engine.claim(run, "draft", actor="cai")
    with pytest.raises(NotAllowedError) as taken:  # bo also holds clerk, but cai claimed it
        engine.complete(run, "draft", actor="bo", fields={"title": "t", "price": 2}, checklist=ALL)
    assert "claimed by cai" in str(taken.value)
    with pytest.raises(NotAllowedError):  # cai is no lead
        engine.claim(run, "draft", actor="cai", to="bo")
    with pytest.raises(NotAllowedError):  # dee does not hold clerk
        engine.claim(run, "draft", actor="ann", to="dee")
    engine.claim(run, "draft", actor="ann", to="bo")  # a lead hands it over
    engine.complete(run, "draft", actor="bo", fields={"title": "t", "price": 2}, checklist=ALL)
    claims = events(engine, run, "task.claimed")
    assert [("cai", None), ("bo", "ann")] == [(c["actor"], c.get("by")) for c in claims]
    refused = events(engine, run, "task.refused")
    assert 3 == len(refused)  # every refusal is on record


def test_claims_do_not_block_n_of_m_approvals_nor_four_eyes(make_engine: Make) -> None:
    engine = make_engine()
    run = engine.start("approvals", {}, actor="cai")
    engine.complete(run, "draft", actor="bo", fields={"title": "t", "price": 3}, checklist=ALL)
    engine.claim(run, "approve", actor="ann")  # a 2-of-M approval
    engine.complete(run, "approve", actor="ann")
    engine.complete(run, "approve", actor="fay")  # the second approver is not blocked
    assert [] == [t.step for t in engine.load(run)[0].active_tasks() if t.step == "approve"]
    second = engine.start("approvals", {}, actor="cai")
    engine.complete(second, "draft", actor="bo", fields={"title": "t", "price": 3}, checklist=ALL)
    engine.claim(second, "approve", actor="ann")
    with pytest.raises(NotAllowedError) as four_eyes:  # bo drafted: never bo's to approve
        engine.claim(second, "approve", actor="fay", to="bo")
    assert "four-eyes" in str(four_eyes.value)


def test_reminders_go_to_the_claimant_or_to_those_yet_to_decide(
    make_engine: Make, tmp_path: Path
) -> None:
    engine = make_engine()
    two = engine.start("approvals", {}, actor="cai")  # approve: 2 of the leads ann, bo, fay
    engine.complete(two, "draft", actor="cai", fields={"title": "t", "price": 3}, checklist=ALL)
    engine.complete(two, "approve", actor="ann")
    tick(engine, two, HOUR)
    assert [["bo", "fay"]] == [e["people"] for e in events(engine, two, "task.reminded")]
    library = tmp_path / "single"
    shutil.copytree(VALID, library)
    text = (library / "approvals.yaml").read_text(encoding="utf-8")
    (library / "approvals.yaml").write_text(text.replace("approvals: 2", "approvals: 1"))
    single = make_engine(sops_dir=library)
    one = single.start("approvals", {}, actor="cai")
    single.complete(one, "draft", actor="cai", fields={"title": "t", "price": 3}, checklist=ALL)
    tick(single, one, HOUR)
    single.claim(one, "approve", actor="bo")
    tick(single, one, HOUR)
    reminded = [e["people"] for e in events(single, one, "task.reminded")]
    assert [["ann", "bo", "fay"], ["bo"]] == reminded  # before and after bo claimed it
    reminders = [m for m in single.outbox.messages if m["subject"].startswith(("Reminder", "提醒"))]
    told = [m["person"] for m in reminders]
    assert ["ann", "bo", "fay", "bo"] == told


def test_a_claim_lapses_when_its_holder_leaves_the_role(make_engine: Make, tmp_path: Path) -> None:
    from storeops.loader import load_roster

    library = tmp_path / "single"
    shutil.copytree(VALID, library)
    text = (library / "approvals.yaml").read_text(encoding="utf-8")
    (library / "approvals.yaml").write_text(text.replace("approvals: 2", "approvals: 1"))
    engine = make_engine(sops_dir=library)
    run = engine.start("approvals", {}, actor="cai")
    engine.complete(run, "draft", actor="cai", fields={"title": "t", "price": 3}, checklist=ALL)
    engine.claim(run, "approve", actor="bo")
    team = library / "team.yaml"
    roster = team.read_text(encoding="utf-8")
    team.write_text(
        roster.replace("bo: {name: 薄, roles: [lead, clerk]", "bo: {name: 薄, roles: [clerk]")
    )
    engine.roster, _ = load_roster(team)  # bo is no longer a lead
    tick(engine, run, HOUR)
    assert [["ann", "fay"]] == [e["people"] for e in events(engine, run, "task.reminded")]
    engine.complete(run, "approve", actor="fay")  # bo's claim holds nobody back now
    assert "approve" not in open_steps(engine, run)


def test_what_a_step_is_about_follows_its_title(make_engine: Make) -> None:
    engine = make_engine()
    run, _ = engine.raise_alert("storefront-5xx", sop="incident", severity="sev1")
    listed = [t for t in engine.tasks(person="ann") if t["run"] == run]
    assert {
        "zh-CN": "担任事件指挥 · storefront-5xx (sev1)",
        "en": "Take incident command · storefront-5xx (sev1)",
    } == listed[0]["title"]
    for locale, title in listed[0]["title"].items():
        assert title == engine.describe_task(run, "command", locale)["title"]
    told = [m for m in engine.outbox.messages if m["person"] == "ann"]
    assert "storefront-5xx (sev1)" in told[0]["subject"]


def test_alerts_open_one_incident_per_key(make_engine: Make) -> None:
    engine = make_engine()
    first, started = engine.raise_alert("storefront-5xx", sop="incident", severity="sev1")
    again, started_again = engine.raise_alert("storefront-5xx", sop="incident", severity="sev1")
    other, _ = engine.raise_alert("checkout-latency", sop="incident")
    assert (True, False) == (started, started_again)
    assert first == again
    assert first != other
    assert ["command"] == [t.step for t in engine.load(first)[0].active_tasks()]
    assert {"alert_key": "storefront-5xx", "severity": "sev1"} == engine.load(first)[0].params
    assert 1 == len(events(engine, first, "alert.repeated"))
    engine.complete(first, "command", actor="ann")
    assert "succeeded" == engine.ledger.get_run(first).status
    later, started_later = engine.raise_alert("storefront-5xx", sop="incident")
    assert started_later
    assert later != first  # the first incident is closed: a new one opens
    with pytest.raises(InvalidInputError, match="sev9"):
        engine.raise_alert("x", sop="incident", severity="sev9")
