"""Safe HTML from SOP text: a small Markdown subset, and file names fit to show and send.

Edge module (markupsafe, which Jinja2 brings). Every piece of text is escaped before any
tag is added, so instructions, form values and file names can never inject markup: the
only tags that can appear are the ones written here. Supported: headings, paragraphs,
line breaks, bullet and numbered lists, pipe tables, **bold** and `code`.
"""

from __future__ import annotations

import re
import unicodedata

from markupsafe import Markup, escape

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> Markup:
    """Escape `text`, then mark up `code` spans and **bold** outside them."""
    parts = text.split("`")
    out: list[str] = []
    for index, part in enumerate(parts):
        escaped = str(escape(part))
        if index % 2 == 1 and index < len(parts) - 1:
            out.append(f"<code>{escaped}</code>")
        else:
            prefix = "`" if index % 2 == 1 else ""  # an unpaired backtick stays text
            out.append(prefix + _BOLD.sub(r"<strong>\1</strong>", escaped))
    return Markup("".join(out))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown(text: str) -> Markup:
    """HTML for instructions written in the Markdown subset above; safe for any input."""
    lines = text.replace("\r\n", "\n").split("\n")
    html: list[str] = []
    paragraph: list[str] = []
    index = 0

    def flush() -> None:
        if paragraph:
            html.append("<p>" + "<br>".join(str(inline(p)) for p in paragraph) + "</p>")
            paragraph.clear()

    while index < len(lines):
        line = lines[index]
        heading = _HEADING.match(line)
        if not line.strip():
            flush()
            index += 1
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            html.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            index += 1
        elif _BULLET.match(line) or _NUMBERED.match(line):
            flush()
            pattern = _BULLET if _BULLET.match(line) else _NUMBERED
            tag = "ul" if pattern is _BULLET else "ol"
            items: list[str] = []
            while index < len(lines) and (found := pattern.match(lines[index])):
                items.append(f"<li>{inline(found.group(1))}</li>")
                index += 1
            html.append(f"<{tag}>{''.join(items)}</{tag}>")
        elif (
            line.lstrip().startswith("|")
            and index + 1 < len(lines)
            and _TABLE_RULE.match(lines[index + 1])
        ):
            flush()
            head = "".join(f"<th>{inline(c)}</th>" for c in _cells(line))
            rows: list[str] = []
            index += 2
            while index < len(lines) and lines[index].lstrip().startswith("|"):
                rows.append(
                    "<tr>"
                    + "".join(f"<td>{inline(c)}</td>" for c in _cells(lines[index]))
                    + "</tr>"
                )
                index += 1
            html.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
        else:
            paragraph.append(line)
            index += 1
    flush()
    return Markup("\n".join(html))


_UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]+]", re.UNICODE)


def safe_file_name(name: str | None, *, limit: int = 120) -> str:
    """A file name to keep beside evidence: no folders, no control or markup characters,
    no leading dots; Chinese and other letters stay. Never empty."""
    base = unicodedata.normalize("NFC", (name or "").replace("\\", "/").rsplit("/", 1)[-1])
    cleaned = _UNSAFE_NAME.sub("_", "".join(c for c in base if c.isprintable()))
    cleaned = re.sub(r"_+", "_", cleaned).strip(" ._")
    if len(cleaned) > limit:
        stem, dot, suffix = cleaned.rpartition(".")
        cleaned = (
            stem[: limit - len(suffix) - 1] + "." + suffix
            if dot and len(suffix) <= 10
            else cleaned[:limit]
        )
    return cleaned or "file"
