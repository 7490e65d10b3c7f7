"""Jinja2 expressions and `{{ }}` values, compiled once in a sandbox and evaluated fast.

Edge module (Jinja2). The machine sees only the `Evaluator` protocol from the core. Each
source string compiles once (~7–10 ms for templates, far less for expressions) and is
cached; evaluation reuses one Jinja2 context per namespace, which is ~4× cheaper than
`compile_expression(...)(**ns)`. Sandboxed: attribute access and calls go through
Jinja2's ImmutableSandboxedEnvironment; undefined names raise.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from storeops.errors import ExpressionError

_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
_RUNTIME_ERRORS = (
    TypeError,
    ValueError,
    ZeroDivisionError,
    KeyError,
    AttributeError,
    OverflowError,
    IndexError,
    RecursionError,
)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with one change: `a.b` on a mapping reads the key `b` first.

    SOP data are JSON-like mappings; `params.items` must be the parameter named items,
    not the dict method (Jinja2's default looks for an attribute first).
    """

    #: `**` and `*` go through call_binop, which refuses results that would hang the engine
    #: (and keeps Jinja2's optimizer from folding them at compile time).
    intercepted_binops = frozenset({"**", "*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError(f"exponent {right!r} is larger than 64")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > 100_000:
                    raise SecurityError("repetition would build more than 100,000 items")
            return left * right
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def make_environment() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False)
    env.filters["days"] = lambda seconds: float(seconds) / 86400.0
    return env


@dataclass
class Compiled:
    source: str
    template: Any
    names: frozenset[str]
    attributes: list[tuple[str, str]] = field(default_factory=list)
    fast: Any = None
    _context: Context | None = None
    _namespace_id: int = 0

    def evaluate(self, namespace: Mapping[str, Any]) -> Any:
        if self.fast is not None:
            try:
                return self.fast(namespace)
            except ExpressionError:
                raise
            except _RUNTIME_ERRORS as exc:
                raise ExpressionError(self.source, f"{type(exc).__name__}: {exc}") from exc
            except SecurityError as exc:
                raise ExpressionError(self.source, f"not allowed in the sandbox: {exc}") from exc
        return self._evaluate_jinja(namespace)

    def _evaluate_jinja(self, namespace: Mapping[str, Any]) -> Any:
        ctx = self._context
        if ctx is None or self._namespace_id != id(namespace) or ctx.parent is not namespace:
            ctx = self.template.new_context(namespace, shared=True)
            self._context, self._namespace_id = ctx, id(namespace)
        else:
            ctx.vars.clear()
        try:
            deque(self.template.root_render_func(ctx), maxlen=0)
            result = ctx.vars["result"]
        except SecurityError as exc:
            raise ExpressionError(self.source, f"not allowed in the sandbox: {exc}") from exc
        except TemplateError as exc:
            raise ExpressionError(self.source, str(exc)) from exc
        except _RUNTIME_ERRORS as exc:
            raise ExpressionError(self.source, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(result, StrictUndefined):
            raise ExpressionError(self.source, "the result is undefined")
        return result


class Expressions:
    """Compile-once cache of expressions, implementing the core's Evaluator protocol."""

    def __init__(self) -> None:
        self.env = make_environment()
        self._cache: dict[str, Compiled] = {}

    def compile(self, source: str) -> Compiled:
        """Compile `source` (an expression, without braces); ExpressionError if it cannot."""
        found = self._cache.get(source)
        if found is not None:
            return found
        try:
            self.env.compile_expression(source)  # proves it is one expression
            tree = self.env.parse("{% set result = (" + source + ") %}")
            template = self.env.from_string(tree)
        except TemplateError as exc:
            raise ExpressionError(source, _syntax_message(exc)) from exc
        except (*_RUNTIME_ERRORS, RecursionError, MemoryError) as exc:
            raise ExpressionError(source, f"does not compile: {type(exc).__name__}") from exc
        compiled = Compiled(
            source=source,
            template=template,
            names=frozenset(meta.find_undeclared_variables(tree)),
            attributes=_attributes(tree),
            fast=_fast(tree, self.env, source),
        )
        self._cache[source] = compiled
        return compiled

    def evaluate(self, source: str, namespace: Mapping[str, Any]) -> Any:
        compiled = self._cache.get(source) or self.compile(source)
        return compiled.evaluate(namespace)

    def render_value(self, value: Any, namespace: Mapping[str, Any]) -> Any:
        """Resolve `with:` inputs: "{{ x }}" keeps x's type, "a {{ x }}" renders text."""
        if isinstance(value, str):
            if "{{" not in value:
                return value
            whole = _WHOLE.match(value)
            if whole and "{{" not in whole.group(1):
                return self.evaluate(whole.group(1).strip(), namespace)
            return str(self.evaluate(_as_concat(value), namespace))
        if isinstance(value, dict):
            return {k: self.render_value(v, namespace) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_value(v, namespace) for v in value]
        return value

    def sources_in(self, value: Any) -> list[str]:
        """Every expression a `with:`-style value will evaluate (for validation)."""
        if isinstance(value, str) and "{{" in value:
            whole = _WHOLE.match(value)
            if whole and "{{" not in whole.group(1):
                return [whole.group(1).strip()]
            return [_as_concat(value)]
        if isinstance(value, dict):
            return [src for v in value.values() for src in self.sources_in(v)]
        if isinstance(value, list):
            return [src for v in value for src in self.sources_in(v)]
        return []


def _as_concat(text: str) -> str:
    """Turn 'a {{ x }} b' into the expression ('a ' ~ (x) ~ ' b')."""
    parts: list[str] = []
    rest = text
    while "{{" in rest:
        before, _, after = rest.partition("{{")
        inner, sep, rest = after.partition("}}")
        if not sep:
            raise ExpressionError(text, "a '{{' is never closed with '}}'")
        if before:
            parts.append(repr(before))
        parts.append(f"({inner.strip()})")
    if rest:
        parts.append(repr(rest))
    return " ~ ".join(parts) if parts else "''"


# ---------------------------------------------------------------- the fast path
#
# Most guards are simple (`params.n > 0 and vars.stock.low_count == 0`). For those, the
# parsed Jinja2 tree is translated to one Python lambda; everything else keeps Jinja2's
# own evaluation. The translation emits only the node kinds listed below, reads names
# and attributes through the same sandbox (`env.getattr`), keeps every constant in a
# table (no literal is ever re-parsed), and raises on undefined names like StrictUndefined.

_COMPARE = {
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "gteq": ">=",
    "lt": "<",
    "lteq": "<=",
    "in": "in",
    "notin": "not in",
}
_BINARY = {
    nodes.Add: "+",
    nodes.Sub: "-",
    nodes.Div: "/",
    nodes.FloorDiv: "//",
    nodes.Mod: "%",
}


class _Unsupported(Exception):
    pass


def _fast(tree: nodes.Template, env: Any, source: str) -> Any:
    """A Python function equal to the expression, or None when it needs full Jinja2."""
    body = tree.body
    if len(body) != 1 or not isinstance(body[0], nodes.Assign):
        return None
    consts: list[Any] = []
    try:
        code = _emit(body[0].node, consts)
    except _Unsupported:
        return None

    def undefined(name: str) -> Any:
        raise ExpressionError(source, f"{name!r} is undefined")

    def lookup(namespace: Mapping[str, Any], name: str) -> Any:
        try:
            return namespace[name]
        except KeyError:
            return undefined(name)

    def attr(obj: Any, name: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[name]
            except KeyError:
                pass
        found = env.getattr(obj, name)
        if isinstance(found, StrictUndefined):
            return undefined(name)
        return found

    def item(obj: Any, key: Any) -> Any:
        found = env.getitem(obj, key)
        if isinstance(found, StrictUndefined):
            return undefined(str(key))
        return found

    scope = {"_l": lookup, "_a": attr, "_i": item, "_c": consts, "__builtins__": {}}
    # The code is built only from the node whitelist in _emit; no input text is re-parsed.
    return eval(f"lambda _ns: {code}", scope)


def _emit(node: nodes.Node, consts: list[Any]) -> str:
    if isinstance(node, nodes.Const):
        consts.append(node.value)
        return f"_c[{len(consts) - 1}]"
    if isinstance(node, nodes.Name):
        if not node.name.isidentifier():
            raise _Unsupported
        consts.append(node.name)
        return f"_l(_ns, _c[{len(consts) - 1}])"
    if isinstance(node, nodes.Getattr):
        consts.append(node.attr)
        index = len(consts) - 1
        return f"_a({_emit(node.node, consts)}, _c[{index}])"
    if isinstance(node, nodes.Getitem):
        if isinstance(node.arg, nodes.Slice):
            raise _Unsupported
        return f"_i({_emit(node.node, consts)}, {_emit(node.arg, consts)})"
    if isinstance(node, nodes.Compare):
        parts = [_emit(node.expr, consts)]
        for operand in node.ops:
            if operand.op not in _COMPARE:
                raise _Unsupported
            parts.append(f"{_COMPARE[operand.op]} {_emit(operand.expr, consts)}")
        return "(" + " ".join(parts) + ")"
    if isinstance(node, nodes.And):
        return f"({_emit(node.left, consts)} and {_emit(node.right, consts)})"
    if isinstance(node, nodes.Or):
        return f"({_emit(node.left, consts)} or {_emit(node.right, consts)})"
    if isinstance(node, nodes.Not):
        return f"(not {_emit(node.node, consts)})"
    if isinstance(node, nodes.Neg):
        return f"(-{_emit(node.node, consts)})"
    if isinstance(node, nodes.BinExpr) and type(node) in _BINARY:
        left, right = _emit(node.left, consts), _emit(node.right, consts)
        return f"({left} {_BINARY[type(node)]} {right})"
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = (_emit(n, consts) for n in (node.test, node.expr1, node.expr2))
        return f"({yes} if {test} else {no})"
    if isinstance(node, nodes.List | nodes.Tuple):
        inner = ", ".join(_emit(n, consts) for n in node.items)
        return f"[{inner}]" if isinstance(node, nodes.List) else f"({inner},)"
    raise _Unsupported


def _attributes(tree: nodes.Template) -> list[tuple[str, str]]:
    """(root name, first attribute) pairs such as ('params', 'gmv_target')."""
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not isinstance(target, nodes.Name):
            continue
        if isinstance(node, nodes.Getattr):
            found.append((target.name, node.attr))
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                found.append((target.name, arg.value))
    return found


def _syntax_message(exc: TemplateError) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"does not compile: {message}"
