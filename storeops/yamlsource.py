"""Read YAML fast while keeping every node's line and column, refusing hostile input.

Edge module: uses ruamel.yaml's C composer (libyaml) to build the node tree, then turns
nodes into plain Python values itself, recording positions by path. This is ~6× faster
than ruamel's round-trip loader and still reports positions. It never constructs
arbitrary objects: only plain YAML tags are accepted. Must not import Prefect or httpx.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from storeops.diagnostics import Diagnostic

Path_ = tuple[str | int, ...]

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 500_000
MAX_DEPTH = 64
MAX_SECONDS = 4.0

_T = "tag:yaml.org,2002:"
_PLAIN = {f"{_T}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


@dataclass
class YamlDoc:
    """Plain data plus the 1-based (line, column) of every key and value by path."""

    file: str
    text: str
    data: Any
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)

    def position(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Where `path` is written; falls back to the nearest enclosing node."""
        for cut in range(len(path), -1, -1):
            sub = path[:cut]
            table = self.keys if key and cut == len(path) else self.values
            if sub in table:
                return table[sub]
            if sub in self.keys:
                return self.keys[sub]
        return (1, 1)


class _Refused(Exception):
    def __init__(self, code: str, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.code, self.message, self.line, self.column = code, message, line, column


class _Builder:
    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.count = 0

    def build(self, node: Node, path: Path_, depth: int) -> Any:
        self.count += 1
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if self.count > MAX_NODES:
            raise _Refused(
                "SOP004",
                f"the document expands to more than {MAX_NODES:,} values "
                "(anchors and aliases repeated too often); write the values out",
                line,
                col,
            )
        if depth > MAX_DEPTH:
            raise _Refused(
                "SOP005",
                f"mappings and lists nest deeper than {MAX_DEPTH} levels; flatten the document",
                line,
                col,
            )
        self.doc.values.setdefault(path, (line, col))
        tag = str(node.tag)
        if tag not in _PLAIN and tag != f"{_T}merge":
            raise _Refused(
                "SOP004",
                f"tag {_short_tag(tag)} is not allowed; SOP files hold plain YAML values only",
                line,
                col,
            )
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise _Refused("SOP002", "unsupported YAML node", line, col)  # pragma: no cover

    def _mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            kline, kcol = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key_node.tag == f"{_T}merge":
                merged.update(self._merge_source(value_node, path, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                raise _Refused("SOP002", "mapping keys must be plain scalars", kline, kcol)
            key = str(_scalar(key_node)) if key_node.value != "" else ""
            if key in result:
                first = self.doc.keys.get((*path, key), (kline, kcol))
                self.doc.problems.append(
                    Diagnostic(
                        "SOP003",
                        f"duplicate key {key!r}, first written at line {first[0]}; "
                        "remove or rename one of them (the first is used)",
                        self.doc.file,
                        kline,
                        kcol,
                    )
                )
                continue
            self.doc.keys[(*path, key)] = (kline, kcol)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge_source(self, node: Node, path: Path_, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            value = self.build(source, path, depth + 1)
            if not isinstance(value, dict):
                line, col = source.start_mark.line + 1, source.start_mark.column + 1
                raise _Refused("SOP002", "a merge key (<<) needs a mapping", line, col)
            for key, item in value.items():
                merged.setdefault(key, item)
        return merged


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_T) :] if tag.startswith(_T) else tag


_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def _scalar(node: ScalarNode) -> Any:
    value: str = node.value
    tag = node.tag
    if tag == f"{_T}str" or tag == f"{_T}timestamp":
        return value
    if tag == f"{_T}null":
        return None
    if tag == f"{_T}bool":
        return _BOOL.get(value, value)
    if tag == f"{_T}int":
        text = value.replace("_", "")
        try:
            return int(text, 10)
        except ValueError:
            return int(text.replace("0o", "0o", 1), 0)
    if tag == f"{_T}float":
        lowered = value.lower().replace("_", "")
        if lowered in (".inf", "+.inf"):
            return float("inf")
        if lowered == "-.inf":
            return float("-inf")
        if lowered == ".nan":
            return float("nan")
        return float(lowered)
    return value


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _Refused(SOP008) if the block runs longer than `seconds` (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def _expired(_signum: int, _frame: Any) -> None:
        raise _Refused("SOP008", f"loading took longer than {seconds:g} s; simplify the file")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_text(path: Path, shown: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _Refused("SOP001", f"cannot read the file: {exc.strerror or exc}") from exc
    if size > MAX_BYTES:
        raise _Refused(
            "SOP001",
            f"the file is {size / 1048576:.1f} MiB; SOP files are limited to "
            f"{MAX_BYTES // 1048576} MiB — split it into several SOPs joined with `call`",
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _Refused("SOP001", f"cannot read the file: {exc.strerror or exc}") from exc
    return decode(raw)


def decode(raw: bytes) -> str:
    """UTF-8 text (a BOM is dropped); _Refused naming the first bad byte otherwise."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _Refused(
            "SOP001",
            f"byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8",
            line,
            column,
        ) from exc
    return text


def _syntax(exc: YAMLError, text: str) -> _Refused:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else 1
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in here[: max(column, 1)] or (here.startswith("\t")):
        first_tab = here.index("\t") + 1 if "\t" in here else column
        return _Refused(
            "SOP007", "tab character in indentation; YAML allows spaces only", line, first_tab
        )
    problem = getattr(exc, "problem", None) if isinstance(exc, MarkedYAMLError) else None
    context = getattr(exc, "context", None) if isinstance(exc, MarkedYAMLError) else None
    message = "; ".join(str(p) for p in (context, problem) if p) or str(exc).splitlines()[0]
    return _Refused("SOP002", f"YAML syntax: {message}", line, column)


def load_yaml_text(text: str, file: str) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse YAML text into a YamlDoc; on failure one diagnostic, never an exception."""
    doc = YamlDoc(file=file, text=text, data=None)
    try:
        with _deadline(MAX_SECONDS):
            started = time.perf_counter()
            if not text.strip():
                raise _Refused("SOP006", "the file is empty; an SOP starts with `id:`")
            try:
                node = YAML(typ="safe").compose(text)
            except YAMLError as exc:
                raise _syntax(exc, text) from exc
            except RecursionError as exc:
                raise _Refused(
                    "SOP005", f"nesting deeper than {MAX_DEPTH} levels; flatten the document"
                ) from exc
            if node is None:
                raise _Refused("SOP006", "the file holds no YAML document")
            doc.data = _Builder(doc).build(node, (), 0)
            if time.perf_counter() - started > MAX_SECONDS:  # pragma: no cover - guard
                raise _Refused("SOP008", f"loading took longer than {MAX_SECONDS:g} s")
    except _Refused as refused:
        return None, [Diagnostic(refused.code, refused.message, file, refused.line, refused.column)]
    return doc, []


def load_yaml(path: str | os.PathLike[str]) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Read and parse a YAML file with every hostile-input guard."""
    shown = str(path)
    try:
        text = _read_text(Path(path), shown)
    except _Refused as refused:
        return None, [
            Diagnostic(refused.code, refused.message, shown, refused.line, refused.column)
        ]
    return load_yaml_text(text, shown)
