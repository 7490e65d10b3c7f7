"""SOP analytics: figures computed by hand from runs driven through the real engine (fake
clock, SQLite ledger) and from hand-written event histories; charts, CSV and the command."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storeops import analytics as a
from storeops import charts
from storeops.durations import us_to_iso
from storeops.loader import load_roster
from storeops.roster import Roster
from storeops.runtime import Engine
from storeops.settings import Settings
from tests.conftest import FIXTURES, HOUR, MINUTE, T0, VALID

Make = Callable[..., Engine]
ALL = {0: "done"}
SVG = "{http://www.w3.org/2000/svg}"


def moment(us: int) -> datetime:
    return datetime.fromisoformat(us_to_iso(us).replace("Z", "+00:00"))


SINCE, UNTIL = moment(T0 - HOUR), moment(T0 + 26 * HOUR)


def advance(engine: Engine, until: int) -> None:
    """Move the fake clock to `until`, firing every timer on the way at its own time."""
    clock: Any = engine.clock
    while True:
        engine.tick(limit=1000)
        wake = engine.next_wake()
        if wake is None or wake > until:
            break
        clock.now = max(clock.now, wake)
    clock.now = until
    engine.tick(limit=1000)


def three_runs(engine: Engine) -> tuple[str, str, str]:
    """`approvals` (draft: clerk, due 2h, times out then → approve: lead, 2 approvals, due
    4h, escalated after 3h to clerk, timeout 8h → fail), three times:

    1. T0: cai drafts at +1h; ann rejects at +2h; cai drafts again at +3h; ann approves at
       +4h, fay at +4h30m → succeeded after 4.5 h, every task on time.
    2. T0+10h: cai drafts at +11h; escalated at +14h, overdue at +15h, ann approves late at
       +16h, nobody else: timed out at +19h → failed after 9 h.
    3. T0+20h: bo drafts at +21h; the approval is escalated at +24h, overdue at +25h and
       still open when the window ends (+26h).
    """
    draft = {"title": "Green tea", "price": 9}
    clock: Any = engine.clock
    one = engine.start("approvals", {}, actor="ann")
    advance(engine, T0 + HOUR)
    engine.complete(one, "draft", actor="cai", fields=draft, checklist=ALL)
    advance(engine, T0 + 2 * HOUR)
    engine.complete(one, "approve", actor="ann", reject=True, reason="price too low")
    advance(engine, T0 + 3 * HOUR)
    engine.complete(one, "draft", actor="cai", fields=draft, checklist=ALL)
    advance(engine, T0 + 4 * HOUR)
    engine.complete(one, "approve", actor="ann")
    advance(engine, T0 + 4 * HOUR + 30 * MINUTE)
    engine.complete(one, "approve", actor="fay")

    advance(engine, T0 + 10 * HOUR)
    two = engine.start("approvals", {}, actor="ann")
    advance(engine, T0 + 11 * HOUR)
    engine.complete(two, "draft", actor="cai", fields=draft, checklist=ALL)
    advance(engine, T0 + 16 * HOUR)
    engine.complete(two, "approve", actor="ann")

    advance(engine, T0 + 20 * HOUR)
    three = engine.start("approvals", {}, actor="ann")
    advance(engine, T0 + 21 * HOUR)
    engine.complete(three, "draft", actor="bo", fields=draft, checklist=ALL)
    advance(engine, T0 + 26 * HOUR)
    assert T0 + 26 * HOUR == clock.now
    return one, two, three


@pytest.fixture
def roster() -> Roster:
    found, problems = load_roster(VALID / "team.yaml")
    assert found is not None, problems
    return found


@pytest.fixture
def engine(make_engine: Make) -> Engine:
    engine = make_engine()
    three_runs(engine)
    return engine


@pytest.fixture
def report(engine: Engine, roster: Roster) -> a.Report:
    return a.report(engine.ledger, since=SINCE, until=UNTIL, roster=roster)


# ---------------------------------------------------------------- figures


def test_run_statuses_are_as_scripted(engine: Engine) -> None:
    assert ["succeeded", "failed", "running"] == [r.status for r in engine.ledger.runs()]


def test_cycle_time_percentiles_rejections_and_rework(report: a.Report) -> None:
    (row,) = report.cycle
    assert ("approvals", 3, 2, 1, 1, 1) == (
        row.sop,
        row.started,
        row.finished,
        row.succeeded,
        row.failed,
        row.open,
    )
    # cycle times 4.5 h and 9 h: p50 halfway, p90 at 90 % of the way
    assert 6.75 * 3600 == row.p50
    assert pytest.approx((4.5 + 0.9 * 4.5) * 3600) == row.p90
    assert (1, 2, 1) == (row.rejections, row.rework, row.runs_with_rework)
    assert 3 == report.runs
    assert "Approvals with four eyes and two of many" == row.title


def test_step_times_waiting_vs_people_and_slowest(report: a.Report) -> None:
    steps = {s.step: s for s in report.steps}
    assert ["draft", "approve", "publish"] == [s.step for s in report.steps]  # process order
    draft, approve, publish = steps["draft"], steps["approve"], steps["publish"]
    # draft: an hour each time, four times (twice in run 1)
    assert ("task", 4, 1, 0) == (draft.kind, draft.visits, draft.rework, draft.rejections)
    assert (3600, 3600, 3600) == (draft.p50, draft.p90, draft.mean)
    assert 3600 == draft.with_people  # unclaimed: all of it in people's hands
    assert 0 == draft.waiting == draft.working
    # approve: 1 h (rejected), 1.5 h, 8 h (timed out); run 3's is still open
    assert ("approval", 3, 1, 1) == (
        approve.kind,
        approve.visits,
        approve.rework,
        approve.rejections,
    )
    assert (5400, 5400 + 0.8 * 23400) == (approve.p50, approve.p90)
    assert ("notify", 1, 0.0) == (publish.kind, publish.visits, publish.mean)
    (slowest,) = report.slowest
    assert ("approvals", "approve") == (slowest.sop, slowest.step)
    assert {"en": "Approve the listing", "zh-CN": "审批上架"} == slowest.title


def test_on_time_per_role(report: a.Report) -> None:
    roles = {r.who: r for r in report.roles}
    assert ["lead", "clerk"] == [r.who for r in report.roles]  # roster order
    clerk, lead = roles["clerk"], roles["lead"]
    assert (4, 4, 0, 0, 0, 0) == (
        clerk.tasks,
        clerk.on_time,
        clerk.late,
        clerk.timed_out,
        clerk.breaches,
        clerk.open_overdue,
    )
    assert 1.0 == clerk.on_time_rate
    # lead: run 1's rejection and approval in time; run 2's escalated and timed out (a
    # late approval by one of two does not close it); run 3's open past its due time
    assert (3, 2, 0, 1, 1, 1) == (
        lead.tasks,
        lead.on_time,
        lead.late,
        lead.timed_out,
        lead.escalated,
        lead.open_overdue,
    )
    assert (1, 3) == (lead.breaches, lead.judged)
    assert pytest.approx(2 / 3) == lead.on_time_rate


def test_on_time_per_person(report: a.Report) -> None:
    people = {
        p.who: (p.tasks, p.on_time, p.late, p.timed_out, p.escalated, p.open_overdue)
        for p in report.people
    }
    assert {
        # rejected and approved in time; approved run 2 late (so not blamed for its timeout)
        "ann": (3, 2, 1, 0, 1, 1),
        # drafted run 3 in time; run 2's approval timed out in his inbox
        "bo": (2, 1, 0, 1, 1, 1),
        "cai": (3, 3, 0, 0, 0, 0),
        "fay": (2, 1, 0, 1, 1, 1),
    } == people
    assert ["ann", "bo", "cai", "fay"] == [p.who for p in report.people]
    assert "蔡" == next(p.title for p in report.people if p.who == "cai")


def test_window_counts_what_ended_inside_it(engine: Engine, roster: Roster) -> None:
    # up to T0+5h: run 1 only (finished at +4.5h), nothing of run 2 yet
    early = a.report(engine.ledger, since=SINCE, until=moment(T0 + 5 * HOUR), roster=roster)
    (row,) = early.cycle
    assert (1, 1, 0, 4.5 * 3600) == (row.started, row.finished, row.open, row.p50)
    # from T0+12h: run 2 finished inside (started before), run 3 started; run 1 is out
    late = a.report(engine.ledger, since=moment(T0 + 12 * HOUR), until=UNTIL, roster=roster)
    (row,) = late.cycle
    assert (1, 1, 0, 1, 1) == (row.started, row.finished, row.succeeded, row.failed, row.open)
    assert 9 * 3600 == row.p50
    assert {"approve": 1, "draft": 1} == {s.step: s.visits for s in late.steps}
    assert 0 == row.rejections
    assert 2 == late.runs


def test_sop_filter_and_empty_window(engine: Engine, roster: Roster) -> None:
    assert 3 == a.report(engine.ledger, since=SINCE, until=UNTIL, sop="approvals").runs
    other = a.report(engine.ledger, since=SINCE, until=UNTIL, sop="branches", roster=roster)
    assert ((), (), (), (), ()) == (
        other.cycle,
        other.steps,
        other.slowest,
        other.roles,
        other.people,
    )
    before = a.report(engine.ledger, since=moment(T0 - 9 * HOUR), until=moment(T0 - HOUR))
    assert 0 == before.runs


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert a.percentile([], 0.5) is None
    assert 5.0 == a.percentile([5.0], 0.9)
    assert 2.0 == a.percentile([3.0, 1.0], 0.5)
    assert pytest.approx(2.8) == a.percentile([1.0, 3.0], 0.9)
    assert 2.5 == a.percentile([1.0, 2.0, 3.0, 4.0], 0.5)


# ---------------------------------------------------------------- hand-written histories


@dataclass(frozen=True)
class Ev:
    type: str
    at: str
    data: dict[str, Any] = field(default_factory=dict)


def at(minutes: float) -> str:
    return us_to_iso(T0 + round(minutes * MINUTE))


def test_action_attempts_are_working_and_backoff_waiting() -> None:
    # entered at 0; attempt 1 at 1 min fails after 10 s; backoff; attempt 2 at 3 min takes
    # 30 s; then a claimed task: assigned at 4 min, claimed at 10, done at 25
    ref = {"step": "push", "visit": 1}
    task = {"step": "check", "visit": 1}
    events = [
        Ev("run.started", at(0), {"sop": "demo"}),
        Ev("state.entered", at(0), {"scope": "", "state": "push"}),
        Ev("action.attempted", at(1), {**ref, "attempt": 1}),
        Ev("action.failed", at(1 + 10 / 60), {**ref, "attempt": 1}),
        Ev("action.attempted", at(3), {**ref, "attempt": 2}),
        Ev("action.succeeded", at(3.5), {**ref, "attempt": 2}),
        Ev("state.entered", at(4), {"scope": "", "state": "check"}),
        Ev("task.assigned", at(4), {**task, "role": "clerk", "candidates": ["cai"]}),
        Ev("task.claimed", at(10), {**task, "actor": "cai"}),
        Ev("task.completed", at(25), {**task, "actor": "cai", "role": "clerk"}),
        Ev("state.entered", at(25), {"scope": "", "state": "done"}),
        Ev("run.finished", at(25), {"status": "succeeded"}),
    ]
    found = a.analyse(
        [a.RunHistory("r1", "demo", events)], since=moment(T0), until=moment(T0 + HOUR)
    )
    push, check = found.steps
    assert ("action", 4 * 60.0, 40.0, 200.0) == (push.kind, push.p50, push.working, push.waiting)
    assert ("task", 21 * 60.0, 6 * 60.0, 15 * 60.0, 0.0) == (
        check.kind,
        check.p50,
        check.waiting,
        check.working,
        check.with_people,
    )
    (slowest,) = found.slowest
    assert "check" == slowest.step
    # no due time: the task is counted but not judged
    (role,) = found.roles
    assert (1, 0, None) == (role.tasks, role.judged, role.on_time_rate)
    assert 25 * 60.0 == found.cycle[0].p50


def test_automated_loops_are_not_rework_but_human_repeats_are() -> None:
    def visit(state: str, minute: float) -> Ev:
        return Ev("state.entered", at(minute), {"scope": "", "state": state})

    def ref(state: str, number: int) -> dict[str, Any]:
        return {"step": state, "visit": number}

    events = [Ev("run.started", at(0))]
    for number in (1, 2, 3):  # a status loop: probe, then wait, three times
        events += [
            visit("probe", 10 * number),
            Ev("action.attempted", at(10 * number), {**ref("probe", number), "attempt": 1}),
            Ev("action.succeeded", at(10 * number + 1), {**ref("probe", number), "attempt": 1}),
            visit("pause", 10 * number + 1),
            Ev("wait.started", at(10 * number + 1), ref("pause", number)),
        ]
    for number in (1, 2):  # a person asked twice
        events += [
            visit("confirm", 40 + number),
            Ev("task.assigned", at(40 + number), {**ref("confirm", number), "role": "lead"}),
        ]
    events += [
        Ev("task.refused", at(42), {"step": "confirm", "actor": "dee"}),
        Ev("task.rejected", at(42), {**ref("confirm", 1), "actor": "ann"}),
        Ev("task.completed", at(43), {**ref("confirm", 2), "actor": "ann"}),
        Ev("run.finished", at(43), {"status": "succeeded"}),
    ]
    found = a.analyse(
        [a.RunHistory("r", "loop", events)], since=moment(T0), until=moment(T0 + HOUR)
    )
    assert {"probe": (3, 0), "pause": (3, 0), "confirm": (2, 1)} == {
        s.step: (s.visits, s.rework) for s in found.steps
    }
    (row,) = found.cycle
    assert (1, 1, 1, 1) == (row.rework, row.runs_with_rework, row.rejections, row.refusals)


def test_unknown_events_and_orphan_references_are_ignored() -> None:
    events = [
        Ev("run.started", at(0)),
        Ev("state.entered", at(0), {"scope": "", "state": "a"}),
        Ev("task.completed", at(1), {"step": "nowhere", "visit": 3, "actor": "x"}),
        Ev("something.new", at(2), {"what": 1}),
    ]
    found = a.analyse([a.RunHistory("r", "s", events)], since=moment(T0), until=moment(T0 + HOUR))
    assert (1, 1) == (found.runs, found.cycle[0].open)
    assert () == found.people


# ---------------------------------------------------------------- tables, CSV, text


def test_csv_round_trips_every_table(report: a.Report) -> None:
    for table in a.TABLES:
        text = a.report_to_csv(report, table, "zh-CN")
        rows = list(csv.DictReader(io.StringIO(text)))
        expected = a.table_rows(report, table, "zh-CN")
        assert [c.key for c in a.columns(table)] == list(rows[0]) if rows else True
        assert len(expected) == len(rows)
        for want, got in zip(expected, rows, strict=True):
            for key, value in want.items():
                if value is None:
                    assert "" == got[key]
                elif isinstance(value, float):
                    assert round(value, 4) == float(got[key])
                else:
                    assert str(value) == got[key]
    roles = a.report_to_csv(report, "roles", "zh-CN").splitlines()
    assert (
        "role,title,tasks,on_time,late,timed_out,breaches,on_time_rate,escalated,open_overdue"
        == (roles[0])
    )
    assert "lead,负责人,3,2,0,1,1,0.6667,1,1" == roles[1]


def test_unknown_table_names_the_tables(report: a.Report) -> None:
    with pytest.raises(ValueError, match="no report table 'nope'; the tables are cycle, steps"):
        a.report_to_csv(report, "nope")


def test_text_is_aligned_in_both_languages(report: a.Report) -> None:
    en = a.report_to_text(report, "en")
    zh = a.report_to_text(report, "zh-CN")
    assert "On time per role" in en
    assert "各角色按时率" in zh
    assert "按时率" in zh
    lines = zh.split("\n")
    start = lines.index("各人员按时率")
    header, first = lines[start + 1], lines[start + 2]
    # CJK characters take two columns: the numbers line up under their headings
    width = a._width  # the function the table uses
    assert width(header[: header.index("任务数") + 3]) == width(first[: first.index(" 3 ") + 2])
    assert "66.7%" in en
    assert "6h45m" in en  # the p50 cycle time


# ---------------------------------------------------------------- charts


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert SVG + "svg" == root.tag
    return root


def _texts(root: ET.Element) -> list[str]:
    """What each <text> shows: without its <title> (a tooltip, not drawn)."""
    return [
        (node.text or "") + "".join(child.tail or "" for child in node)
        for node in root.iter(SVG + "text")
    ]


def test_charts_parse_are_deterministic_and_show_cjk(report: a.Report) -> None:
    made = a.report_charts(report, "zh-CN")
    assert set(a.TABLES) == set(made)
    assert made == a.report_charts(report, "zh-CN")
    for text in made.values():
        root = _svg(text)
        assert "Noto Sans CJK SC" in root.attrib["font-family"]
    assert "审批上架" in " ".join(_texts(_svg(made["slowest"])))
    assert "蔡" in " ".join(_texts(_svg(made["people"])))
    assert "违约 1" in _texts(_svg(made["people"]))
    english = a.report_charts(report, "en")
    assert "1 breach" in _texts(_svg(english["roles"]))
    assert "Waiting vs working per step (mean per visit)" in _texts(_svg(english["steps"]))


def test_chart_labels_are_escaped() -> None:
    hostile = '<script>alert("x")</script> & 上架\x07'
    for text in (
        charts.bar_chart(hostile, [charts.Bar(hostile, (60.0, 120.0))], series=(hostile, "p90")),
        charts.stacked_bar_chart("t", [charts.Bar(hostile, (1.0, 2.0))], series=("a", hostile)),
        charts.rate_chart(hostile, [charts.Rate(hostile, 0.5, 1, 2)], lang="zh-CN"),
    ):
        assert "<script" not in text
        assert "&lt;script&gt;" in text
        root = _svg(text)  # parses: the control character was replaced
        assert any("上架" in t for t in _texts(root))
        assert not root.findall(f".//{SVG}script")


def test_chart_axis_units_and_empty_charts() -> None:
    two_days = charts.bar_chart("t", [charts.Bar("x", (2 * 86400.0,))], series=("p50",))
    assert ["0", "0.5d", "1d", "1.5d", "2d"] == _texts(_svg(two_days))[1:6]
    minutes = charts.bar_chart("t", [charts.Bar("x", (600.0,))], series=("p50",))
    assert "10m" in _texts(_svg(minutes))
    empty = charts.rate_chart("Nothing", [], empty="没有数据")
    assert ["Nothing", "没有数据"] == _texts(_svg(empty))
    long = "很长的标签" * 10
    cut = _texts(_svg(charts.bar_chart("t", [charts.Bar(long, (1.0,))], series=("p50",))))
    assert any(t.endswith("…") and len(t) < len(long) for t in cut)


def test_hostile_sop_title_is_escaped_end_to_end(make_engine: Make, tmp_path: Path) -> None:
    sops = tmp_path / "sops"
    sops.mkdir()
    shutil.copy(VALID / "team.yaml", sops / "team.yaml")
    (sops / "xss.yaml").write_text(
        "id: xss\nversion: 1\n"
        'title: {zh-CN: "<script>alert(1)</script> 上架", en: "<img src=x onerror=alert(1)>"}\n'
        "roles: [clerk]\nstart: check\nstates:\n"
        "  check:\n    type: task\n    role: clerk\n"
        '    title: {zh-CN: "检查 <b>", en: "Check </text>"}\n'
        "    on_timeout: fail\n    next: done\n"
        "  done: {type: succeed}\n",
        encoding="utf-8",
    )
    engine = make_engine(sops_dir=sops)
    run = engine.start("xss", {}, actor="ann")
    advance(engine, T0 + HOUR)
    engine.complete(run, "check", actor="cai")
    found = a.report(engine.ledger, since=SINCE, until=UNTIL)
    for lang in ("zh-CN", "en"):
        for text in a.report_charts(found, lang).values():
            assert "<script" not in text
            assert "<img" not in text
            assert "<b>" not in text
            _svg(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 上架" in a.report_charts(found, "zh-CN")["cycle"]


# ---------------------------------------------------------------- the command


def _args(**values: Any) -> argparse.Namespace:
    base: dict[str, Any] = {"since": None, "until": None, "sop": None, "format": "text"}
    return argparse.Namespace(**(base | {"table": None} | values))


@pytest.fixture
def ledger_file(make_engine: Make, tmp_path: Path) -> str:
    path = str(tmp_path / "report.db")
    three_runs(make_engine(ledger=path))
    return path


def _settings(ledger: str, lang: str) -> Settings:
    return Settings(ledger=ledger, roster=str(VALID / "team.yaml"), lang=lang, sops=str(VALID))


def test_cmd_report_text_csv_json(ledger_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    window = {"since": "2026-11-09", "until": "2026-11-10"}
    assert 0 == a.cmd_report(_args(**window), _settings(ledger_file, "zh-CN"))
    out = capsys.readouterr().out
    assert "SOP 运行报告  2026-11-09 00:00 UTC → 2026-11-11 00:00 UTC  (3 次运行)" in out
    assert "各 SOP 周期" in out

    assert 0 == a.cmd_report(
        _args(format="csv", table="cycle", **window), _settings(ledger_file, "en")
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [("approvals", "24300.0", "2")] == [(r["sop"], r["p50"], r["finished"]) for r in rows]

    import json

    assert 0 == a.cmd_report(
        _args(format="json", table="roles", **window), _settings(ledger_file, "en")
    )
    data = json.loads(capsys.readouterr().out)
    assert ["roles"] == list(data["tables"])
    assert "2026-11-09T00:00:00+00:00" == data["since"]


def test_cmd_report_usage_errors(ledger_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _settings(ledger_file, "en")
    assert 2 == a.cmd_report(_args(format="csv"), cfg)
    assert "--format csv writes one table; add --table" in capsys.readouterr().err
    assert 2 == a.cmd_report(_args(table="nope"), cfg)
    assert "no report table 'nope'" in capsys.readouterr().err
    assert 2 == a.cmd_report(_args(since="last week"), cfg)
    assert "--since 'last week' is not a date or an instant" in capsys.readouterr().err
    assert 2 == a.cmd_report(_args(since="2026-11-10", until="2026-11-09"), cfg)
    assert "the window is empty" in capsys.readouterr().err


def test_parse_window_dates_and_instants() -> None:
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    assert (datetime(2026, 11, 15, 9, 30, tzinfo=UTC), now) == a.parse_window(None, None, now=now)
    assert (
        datetime(2026, 11, 9, tzinfo=UTC),
        datetime(2026, 11, 16, tzinfo=UTC),
    ) == a.parse_window("2026-11-09", "2026-11-15")
    since, _ = a.parse_window("2026-11-09T09:00+08:00", "2026-11-10")
    assert datetime(2026, 11, 9, 1, tzinfo=UTC) == since


# ---------------------------------------------------------------- the web page


def test_web_pages_for_leads_only(ledger_file: str, tmp_path: Path) -> None:
    import httpx

    from storeops.web import auth
    from storeops.web.app import create_app

    home = tmp_path / "home"
    settings = Settings(
        home=str(home),
        ledger=ledger_file,
        sops=str(VALID),
        templates=str(FIXTURES / "templates"),
        roster=str(VALID / "team.yaml"),
    )
    signer = auth.Signer(auth.load_secret(home))
    for person in ("bo", "dee"):
        auth.set_password(home, person, "correct horse")
    app = create_app(settings)
    window = {"since": "2026-11-09", "until": "2026-11-10"}

    async def visit() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
            answers = [await client.get("/analytics")]
            client.cookies.set("storeops_session", signer.session_cookie("bo", 1))
            answers.append(await client.get("/analytics", params=window))
            answers.append(await client.get("/analytics.csv", params={**window, "table": "roles"}))
            answers.append(await client.get("/analytics.csv", params={"table": "nope"}))
            client.cookies.set("storeops_session", signer.session_cookie("dee", 1))
            answers.append(await client.get("/analytics", params=window))
        return answers

    anonymous, page, table, bad, not_lead = asyncio.run(visit())
    app.state.inbox.close()
    assert (303, "/signin?next=%2Fanalytics") == (
        anonymous.status_code,
        anonymous.headers["location"],
    )
    assert 200 == page.status_code
    assert 5 == page.text.count("<svg ")
    assert "各角色按时率" in page.text  # bo works in Chinese
    assert "/analytics.csv?since=2026-11-09&amp;until=2026-11-10&amp;table=people" in page.text
    assert "<style" not in page.text  # the CSP allows no inline style
    assert 200 == table.status_code
    assert "text/csv; charset=utf-8" == table.headers["content-type"]
    assert table.text.startswith("\ufeffrole,title,")
    assert "lead,负责人,3,2,0,1,1,0.6667,1,1" in table.text.splitlines()
    assert 400 == bad.status_code
    assert 403 == not_lead.status_code


@pytest.mark.parametrize(("since", "until"), [(None, "0001-01-01"), ("9999-12-31", "9999-12-31")])
def test_windows_past_the_calendar_are_refused_with_a_reason(since: str | None, until: str) -> None:
    with pytest.raises(ValueError, match="calendar's range"):
        a.parse_window(since, until)
