"""Draw an SOP as a Mermaid state diagram or Graphviz DOT (nested for parallel and map).

Pure core: standard library and the spec models only.
"""

from __future__ import annotations

from typing import Any

from storeops import spec as s


def _label(state: Any, sid: str, locale: str) -> str:
    title = s.localize(getattr(state, "title", None), locale)
    kind = state.type
    role = getattr(state, "role", None)
    extra = f" · {role}" if role else ""
    extra += f" · {state.uses}" if isinstance(state, s.ActionState) else ""
    return f"{title or sid} [{kind}{extra}]"


def _safe(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")


def to_mermaid(sop: s.SopSpec, locale: str = "en") -> str:
    lines = ["stateDiagram-v2", f"    %% {sop.id} v{sop.version}"]
    _mermaid_scope(sop.states, sop.start, lines, "    ", locale)
    return "\n".join(lines) + "\n"


def _mermaid_scope(
    states: dict[str, Any], start: str, lines: list[str], pad: str, locale: str
) -> None:
    lines.append(f"{pad}[*] --> {start}")
    for sid, state in states.items():
        lines.append(f'{pad}state "{_safe(_label(state, sid, locale))}" as {sid}')
        if isinstance(state, s.ParallelState):
            lines.append(f"{pad}state {sid} {{")
            for i, (name, branch) in enumerate(state.branches.items()):
                if i:
                    lines.append(f"{pad}    --")
                lines.append(f"{pad}    %% branch {name}")
                _mermaid_scope(branch.states, branch.start, lines, pad + "    ", locale)
            lines.append(f"{pad}}}")
        elif isinstance(state, s.MapState):
            lines.append(f"{pad}state {sid} {{")
            _mermaid_scope(state.iterator.states, state.iterator.start, lines, pad + "    ", locale)
            lines.append(f"{pad}}}")
    for sid, state in states.items():
        for field, target in s.transitions(state):
            label = "" if field == "next" else f" : {field.split('.')[0]}"
            lines.append(f"{pad}{sid} --> {target}{label}")
        if s.is_end(state):
            lines.append(f"{pad}{sid} --> [*]")


def to_dot(sop: s.SopSpec, locale: str = "en") -> str:
    lines = [
        f'digraph "{sop.id}" {{',
        "    rankdir=TB;",
        '    node [shape=box, style="rounded", fontname="Noto Sans CJK SC, sans-serif"];',
        '    __start [shape=point, label=""];',
        f"    __start -> {sop.start};",
    ]
    _dot_scope(sop.states, lines, "    ", locale)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_scope(states: dict[str, Any], lines: list[str], pad: str, locale: str) -> None:
    for sid, state in states.items():
        shape = (
            "doublecircle" if s.is_end(state) else "diamond" if state.type == "choice" else "box"
        )
        lines.append(f'{pad}{sid} [label="{_safe(_label(state, sid, locale))}", shape={shape}];')
        if isinstance(state, s.ParallelState | s.MapState):
            branches = (
                state.branches.items()
                if isinstance(state, s.ParallelState)
                else [("items", state.iterator)]
            )
            for name, branch in branches:
                lines.append(f"{pad}subgraph cluster_{sid}_{name} {{")
                lines.append(f'{pad}    label="{sid}: {name}";')
                _dot_scope(branch.states, lines, pad + "    ", locale)
                lines.append(f"{pad}}}")
                lines.append(f"{pad}{sid} -> {branch.start} [style=dashed];")
    for sid, state in states.items():
        for field, target in s.transitions(state):
            label = "" if field == "next" else f' [label="{field.split(".")[0]}"]'
            lines.append(f"{pad}{sid} -> {target}{label};")
