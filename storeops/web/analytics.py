"""The inbox's analytics pages, for lead roles: `GET /analytics` (SVG charts inline and
tables) and `GET /analytics.csv?table=…` (one table as a spreadsheet download).

Edge module (FastAPI). The app mounts `router` under the prefix /analytics
(`storeops.web.app._include_analytics`), so paths here are relative to it. Sign-in is the
inbox's: the `Me` dependency of `storeops.web.context` (a visitor who is not signed in is
sent to the sign-in page); a signed-in person without a lead role gets 403. Figures come
from `storeops.analytics` over the inbox engine's ledger and roster; pages render with the
inbox's templates (autoescaped, no inline script or style: the CSP forbids both).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from storeops import analytics as a
from storeops.web.context import Inbox, Me, Viewer, inbox_of

__all__ = ["router"]

router = APIRouter(tags=["analytics"])

_TEXT: Final = {
    "en": {
        "title": "SOP analytics",
        "runs": "runs:",
        "since": "From",
        "until": "To (inclusive)",
        "all": "all SOPs",
        "show": "Show",
        "empty": "Nothing in this window.",
        "forbidden": "The analytics are for lead roles.",
        "bad": "These dates cannot be read.",
        "notes": "Times are from the ledger; dates are UTC days. A run counts when it "
        "finished, a step when it was left, a task when it was closed. 'With people' is a "
        "human step from assignment until done: waiting for a person and their work together.",
    },
    "zh-CN": {
        "title": "SOP 运行分析",
        "runs": "运行数：",
        "since": "开始日期",
        "until": "结束日期（含）",
        "all": "全部 SOP",
        "show": "查看",
        "empty": "此时间段内没有数据。",
        "forbidden": "运行分析仅对负责人角色开放。",
        "bad": "无法识别这些日期。",
        "notes": "时间取自台账，日期按 UTC 计。"
        "运行按结束时间计，步骤按离开时间计，任务按关闭时间计。"
        "“在人手中”是人工步骤从分配到完成的时间，包含等待和处理。",
    },
}
_BAD_COLUMNS: Final = frozenset({"late", "timed_out", "breaches", "open_overdue"})


def _texts(viewer: Viewer) -> dict[str, str]:
    return _TEXT["zh-CN" if viewer.locale == "zh-CN" else "en"]


def _refusal(request: Request, inbox: Inbox, viewer: Viewer) -> Response | None:
    if viewer.is_lead:
        return None
    texts = _texts(viewer)
    return inbox.message(
        request, viewer, status_code=403, title=texts["title"], text=texts["forbidden"]
    )


def _window(
    request: Request, inbox: Inbox, viewer: Viewer, since: str | None, until: str | None
) -> tuple[datetime, datetime] | Response:
    try:
        return a.parse_window(since or None, until or None)
    except ValueError as exc:
        title = _texts(viewer)["title"]
        return inbox.message(
            request,
            viewer,
            status_code=400,
            title=title,
            text=_texts(viewer)["bad"],
            detail=str(exc),
        )


def _last_day(end: datetime) -> str:
    """The inclusive last day a date field shows for the window's exclusive end."""
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date().isoformat()


def _cell(col: a.Column, value: Any, lang: str) -> dict[str, str]:
    classes = []
    if col.kind != "text":
        classes.append("num")
    if col.key in _BAD_COLUMNS and value:
        classes.append("late")
    return {"text": a.format_cell(col, value, lang), "cls": " ".join(classes)}


Since = Annotated[str | None, Query(max_length=40)]
Until = Annotated[str | None, Query(max_length=40)]
Sop = Annotated[str | None, Query(max_length=100)]


@router.get("")
def analytics_page(
    request: Request, viewer: Me, since: Since = None, until: Until = None, sop: Sop = None
) -> Response:
    """Charts and tables of the window (default: the 7 days up to now), in the viewer's
    language; each table links its CSV with the same filters."""
    inbox = inbox_of(request)
    refused = _refusal(request, inbox, viewer)
    if refused is not None:
        return refused
    window = _window(request, inbox, viewer, since, until)
    if isinstance(window, Response):
        return window
    start, end = window
    lang = "zh-CN" if viewer.locale == "zh-CN" else "en"
    engine = inbox.engine
    report = a.report(engine.ledger, since=start, until=end, sop=sop or None, roster=engine.roster)
    sops = sorted({record.sop_id for record in engine.ledger.runs()})
    charts = a.report_charts(report, lang)
    query = {"since": start.date().isoformat(), "until": _last_day(end), "sop": sop or ""}
    sections = []
    for name in a.TABLES:
        cols = a.columns(name)
        rows = [
            [_cell(col, row[col.key], lang) for col in cols]
            for row in a.table_rows(report, name, lang)
        ]
        params = urlencode({k: v for k, v in {**query, "table": name}.items() if v})
        sections.append(
            {
                "name": name,
                "title": a.table_title(name, lang),
                "columns": [{"heading": c.heading(lang), "kind": c.kind} for c in cols],
                "rows": rows,
                # storeops.charts escapes every label, so the SVG is safe to inline
                "chart": Markup(charts[name]) if rows and name in charts else None,
                "csv_url": f"/analytics.csv?{params}",
            }
        )
    return inbox.page(
        request,
        "analytics.html",
        viewer,
        a_t=_texts(viewer),
        window=f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC",
        runs=report.runs,
        form={"since": query["since"], "until": query["until"], "sop": sop or ""},
        sops=sops,
        sections=sections,
    )


@router.get(".csv")
def analytics_csv(
    request: Request,
    viewer: Me,
    table: Annotated[str, Query(max_length=20)] = "cycle",
    since: Since = None,
    until: Until = None,
    sop: Sop = None,
) -> Response:
    """One table as CSV: UTF-8 with a byte-order mark (so spreadsheet programs read the
    Chinese titles), column keys as the header, seconds and 0–1 rates as numbers."""
    inbox = inbox_of(request)
    refused = _refusal(request, inbox, viewer)
    if refused is not None:
        return refused
    if table not in a.TABLES:
        return Response(
            f"no table {table!r}; the tables are {', '.join(a.TABLES)}\n",
            status_code=400,
            media_type="text/plain; charset=utf-8",
        )
    window = _window(request, inbox, viewer, since, until)
    if isinstance(window, Response):
        return window
    start, end = window
    engine = inbox.engine
    report = a.report(engine.ledger, since=start, until=end, sop=sop or None, roster=engine.roster)
    lang = "zh-CN" if viewer.locale == "zh-CN" else "en"
    name = f"storeops-{table}-{start:%Y%m%d}-{_last_day(end).replace('-', '')}.csv"
    return Response(
        "\ufeff" + a.report_to_csv(report, table, lang),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
