"""The weekly-report flow: SOP analytics of the last days as Prefect table artifacts.

Outer edge (Prefect). The figures are `storeops.analytics.report` over the ledger of the
environment (STOREOPS_LEDGER / STOREOPS_HOME); this flow only publishes them: the
`weekly-report` table artifact holds cycle times per SOP with a Markdown summary as its
description, and `weekly-report-<table>` artifacts hold the other tables (steps, slowest,
roles, people). Keys are stable, so the Prefect UI shows each week as a new version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
from prefect import flow
from prefect.artifacts import acreate_table_artifact

from storeops import analytics as a
from storeops.roster import EMPTY
from storeops.settings import Settings

__all__ = ["ARTIFACT_KEY", "artifact_key", "summary_markdown", "weekly_report"]

ARTIFACT_KEY = "weekly-report"


def artifact_key(table: str) -> str:
    """The artifact key of a table: `weekly-report` for cycle times, else
    `weekly-report-<table>` (Prefect keys: lowercase letters, digits and dashes)."""
    return ARTIFACT_KEY if table == "cycle" else f"{ARTIFACT_KEY}-{table}"


def _md(text: object) -> str:
    """Text safe in Markdown: no HTML, no emphasis or table syntax from SOP titles."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "\\`*_[]|#":
        out = out.replace(char, "\\" + char)
    return out


def _people_table(report: a.Report, table: str, lang: str) -> list[dict[str, Any]]:
    """Rows with headings in `lang` and values as people read them (2h30m, 66.7%)."""
    cols = a.columns(table)
    return [
        {col.heading(lang): a.format_cell(col, row[col.key], lang) for col in cols}
        for row in a.table_rows(report, table, lang)
    ]


def summary_markdown(report: a.Report, lang: str = "zh-CN") -> str:
    """A short Markdown summary: the window, each SOP's cycle time, rejections and rework,
    its slowest step, and the roles with breaches. Every title is escaped."""
    zh = lang == "zh-CN"
    cols = {c.key: c for c in a.columns("cycle")}
    window = (
        f"{report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC · "
        f"{report.runs} {'次运行' if zh else 'run(s)'}"
    )
    lines = [f"# {'每周 SOP 报告' if zh else 'Weekly SOP report'}", "", window, ""]
    slowest = {row["sop"]: row for row in a.table_rows(report, "slowest", lang)}
    cycle = a.table_rows(report, "cycle", lang)
    if not cycle:
        lines.append("本周没有运行。" if zh else "No runs in this window.")
    for row in cycle:
        p50 = a.format_cell(cols["p50"], row["p50"], lang)
        p90 = a.format_cell(cols["p90"], row["p90"], lang)
        if zh:
            text = (
                f"- **{_md(row['title'])}**：结束 {row['finished']} 次（成功 {row['succeeded']}），"
                f"周期 p50 {p50} / p90 {p90}；驳回 {row['rejections']}，返工 {row['rework']}"
            )
        else:
            text = (
                f"- **{_md(row['title'])}**: {row['finished']} finished "
                f"({row['succeeded']} succeeded), cycle p50 {p50} / p90 {p90}; "
                f"{row['rejections']} rejection(s), {row['rework']} rework"
            )
        slow = slowest.get(row["sop"])
        if slow is not None:
            took = a.format_cell(cols["p50"], slow["p50"], lang)
            text += (
                f"；最慢：{_md(slow['title'])}（p50 {took}）"
                if zh
                else f"; slowest: {_md(slow['title'])} (p50 {took})"
            )
        lines.append(text)
    late = [r for r in a.table_rows(report, "roles", lang) if r["breaches"] or r["open_overdue"]]
    if late:
        lines += ["", "## 违约的角色" if zh else "## Roles with breaches"]
        rate = next(c for c in a.columns("roles") if c.key == "on_time_rate")
        for r in late:
            shown = a.format_cell(rate, r["on_time_rate"], lang)
            lines.append(
                f"- {_md(r['title'])}：按时率 {shown}，违约 {r['breaches']}，"
                f"未完成已逾期 {r['open_overdue']}"
                if zh
                else f"- {_md(r['title'])}: {shown} on time, {r['breaches']} breach(es), "
                f"{r['open_overdue']} open overdue"
            )
    return "\n".join(lines) + "\n"


def _build(settings: Settings, since: datetime, until: datetime, sop: str | None) -> a.Report:
    from storeops.ledger import open_ledger

    roster = settings.roster() if settings.roster_path.is_file() else EMPTY
    ledger = open_ledger(settings.ledger_url)
    try:
        return a.report(ledger, since=since, until=until, sop=sop, roster=roster)
    finally:
        ledger.close()


@flow(name="weekly-report", persist_result=False, log_prints=False)
async def weekly_report(
    days: int = 7,
    sop: str | None = None,
    lang: Literal["zh-CN", "en"] = "zh-CN",
    until: datetime | None = None,
) -> dict[str, Any]:
    """每周 SOP 报告 / Weekly SOP report: the `days` before `until` (default: now),
    published as table artifacts. Returns the window, the run count and artifact keys."""
    end = (until or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(days=days)
    settings = Settings()
    found = await anyio.to_thread.run_sync(lambda: _build(settings, start, end, sop))
    summary = summary_markdown(found, lang)
    keys = []
    for table in a.TABLES:
        key = artifact_key(table)
        description = (
            summary
            if table == "cycle"
            else f"{a.table_title(table, lang)} · {start:%Y-%m-%d} → {end:%Y-%m-%d}"
        )
        await acreate_table_artifact(
            table=_people_table(found, table, lang), key=key, description=description
        )
        keys.append(key)
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "runs": found.runs,
        "artifacts": keys,
    }
