"""The small GraphQL reader the Shopify double needs: one document with one or more
operations, fields with aliases, arguments (literals or `$variables`), directives and
selection sets. Fragments, inline fragments and block strings are refused.

Pure: standard library only. It also projects a resolved result onto a selection set
and computes Shopify's calculated query cost (shopify.dev, "GraphQL Admin API rate
limits": scalar/enum 0, object 1, connection 2 + first x per-node cost, mutation 10).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Field", "GraphQLError", "Operation", "Var", "parse_document", "project"]


class GraphQLError(Exception):
    """A request-level error: becomes one entry of the response's `errors` list."""

    def __init__(self, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": code, **extra} if code else dict(extra)

    def to_json(self, path: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if path:
            out["path"] = path
        if self.extensions:
            out["extensions"] = self.extensions
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclasses.dataclass(slots=True)
class Field:
    name: str
    alias: str | None
    args: dict[str, Any]
    directives: dict[str, dict[str, Any]]
    selections: list[Field]

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclasses.dataclass(slots=True)
class Operation:
    kind: str  # query | mutation
    name: str | None
    defaults: dict[str, Any]
    selections: list[Field]


_TOKEN = re.compile(
    r"""(?P<skip>[\s,\ufeff]+|\#[^\n]*)
      |(?P<spread>\.\.\.)
      |(?P<punct>[!$():=@\[\]{}|&])
      |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<block>\"\"\")
      |(?P<string>"(?:[^"\\\n]|\\.)*")
      |(?P<name>[_A-Za-z][_0-9A-Za-z]*)""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise GraphQLError(f"Parse error on {text[pos : pos + 10]!r} at offset {pos}")
        kind = match.lastgroup or ""
        pos = match.end()
        if kind == "skip":
            continue
        if kind in ("spread", "block"):
            what = "fragments" if kind == "spread" else "block strings"
            raise GraphQLError(f"{what} are not supported by the loopback GraphQL subset")
        tokens.append((kind, match.group()))
    tokens.append(("eof", ""))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok = self.tokens[self.i]
        if (value is not None and tok != value) or (kind is not None and tok_kind != kind):
            want = value or kind
            raise GraphQLError(f"Parse error on {tok or 'end of document'!r}: expected {want}")
        self.i += 1
        return tok

    def document(self) -> list[Operation]:
        ops: list[Operation] = []
        while self.peek()[0] != "eof":
            ops.append(self.operation())
        if not ops:
            raise GraphQLError("Parse error: the document has no operation")
        return ops

    def operation(self) -> Operation:
        kind, name = "query", None
        defaults: dict[str, Any] = {}
        if self.peek()[1] != "{":
            kind = self.take(kind="name")
            if kind == "fragment":
                raise GraphQLError("fragments are not supported by the loopback GraphQL subset")
            if kind not in ("query", "mutation"):
                raise GraphQLError(f"Parse error on {kind!r}: expected query or mutation")
            if self.peek()[0] == "name":
                name = self.take()
            if self.peek()[1] == "(":
                self.take("(")
                while self.peek()[1] != ")":
                    self.take("$")
                    var = self.take(kind="name")
                    self.take(":")
                    self.type_ref()
                    if self.peek()[1] == "=":
                        self.take("=")
                        defaults[var] = self.value()
                self.take(")")
            self.directives()
        return Operation(kind, name, defaults, self.selection_set())

    def type_ref(self) -> None:
        if self.peek()[1] == "[":
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek()[1] == "!":
            self.take("!")

    def directives(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        while self.peek()[1] == "@":
            self.take("@")
            name = self.take(kind="name")
            found[name] = self.arguments()
        return found

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.peek()[1] == "(":
            self.take("(")
            while self.peek()[1] != ")":
                name = self.take(kind="name")
                self.take(":")
                args[name] = self.value()
            self.take(")")
        return args

    def selection_set(self) -> list[Field]:
        self.take("{")
        fields: list[Field] = []
        while self.peek()[1] != "}":
            first = self.take(kind="name")
            alias = None
            if self.peek()[1] == ":":
                self.take(":")
                alias, first = first, self.take(kind="name")
            args = self.arguments()
            directives = self.directives()
            subs = self.selection_set() if self.peek()[1] == "{" else []
            fields.append(Field(first, alias, args, directives, subs))
        self.take("}")
        if not fields:
            raise GraphQLError("Parse error: empty selection set")
        return fields

    def value(self) -> Any:
        kind, tok = self.peek()
        if tok == "$":
            self.take("$")
            return Var(self.take(kind="name"))
        if tok == "[":
            self.take("[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
            self.take("]")
            return items
        if tok == "{":
            self.take("{")
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        self.i += 1
        if kind == "string":
            return _unescape(tok[1:-1])
        if kind == "number":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok, tok)
        raise GraphQLError(f"Parse error on {tok or 'end of document'!r}: expected a value")


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u":
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(simple.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_document(text: str) -> list[Operation]:
    return _Parser(text).document()


def resolve(value: Any, variables: Mapping[str, Any]) -> Any:
    """Replace `$variables` in an argument value by their values (missing = null)."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


# ---- projection: resolvers return dicts with "__typename"; a value may be a callable
# taking the field's resolved arguments (connections, quantities(names:), ...).

Resolver = Callable[[dict[str, Any]], Any]


def project(value: Any, fields: list[Field], variables: Mapping[str, Any], path: str) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [project(item, fields, variables, path) for item in value]
    if not isinstance(value, dict):
        raise GraphQLError(f"Selections can't be made on scalars (field '{path}')")
    typename = value.get("__typename", "Object")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name == "__typename":
            out[field.key] = typename
            continue
        if field.name not in value:
            raise GraphQLError(
                f"Field '{field.name}' doesn't exist on type '{typename}'",
                "undefinedField",
                typeName=typename,
                fieldName=field.name,
            )
        item = value[field.name]
        if callable(item):
            item = item({k: resolve(v, variables) for k, v in field.args.items()})
        if field.selections:
            out[field.key] = project(item, field.selections, variables, field.name)
        elif isinstance(item, dict) or (
            isinstance(item, list) and item and isinstance(item[0], dict)
        ):
            raise GraphQLError(
                f"Field must have selections (field '{field.name}' returns {typename} objects)",
                "selectionMismatch",
            )
        else:
            out[field.key] = item
    return out


# ---- calculated query cost


def _size(field: Field, variables: Mapping[str, Any]) -> int | None:
    for arg in ("first", "last"):
        if arg in field.args:
            value = resolve(field.args[arg], variables)
            return int(value) if value is not None else 0
    return None


def requested_cost(fields: list[Field], variables: Mapping[str, Any]) -> int:
    """Shopify's rule: scalars 0, objects 1, connections 2 + size x (1 + node cost)."""
    total = 0
    for field in fields:
        if not field.selections:
            continue
        size = _size(field, variables)
        if size is None:
            total += 1 + requested_cost(field.selections, variables)
            continue
        total += 2 + size * (1 + _node_cost(field, variables, requested_cost))
    return total


def _node_cost(
    field: Field,
    variables: Mapping[str, Any],
    measure: Callable[[list[Field], Mapping[str, Any]], int],
) -> int:
    best = 0
    for sub in field.selections:
        if sub.name == "nodes":
            best = max(best, measure(sub.selections, variables))
        elif sub.name == "edges":
            for inner in sub.selections:
                if inner.name == "node":
                    best = max(best, measure(inner.selections, variables))
    return best


def actual_cost(fields: list[Field], result: Any, variables: Mapping[str, Any]) -> int:
    """The same rule over what was returned: connections count their returned nodes."""
    if not isinstance(result, dict):
        return 0
    total = 0
    for field in fields:
        if not field.selections:
            continue
        value = result.get(field.key)
        if value is None:
            continue
        if _size(field, variables) is None:
            items = value if isinstance(value, list) else [value]
            total += sum(1 + actual_cost(field.selections, v, variables) for v in items)
            continue
        nodes = _returned_nodes(field, value)
        per_node = 0
        for node in nodes:
            node_fields = [f for sub in field.selections for f in _node_fields(sub)]
            per_node += 1 + actual_cost(node_fields, node, variables)
        total += 2 + per_node
    return total


def _node_fields(sub: Field) -> list[Field]:
    if sub.name == "nodes":
        return sub.selections
    if sub.name == "edges":
        return [f for inner in sub.selections if inner.name == "node" for f in inner.selections]
    return []


def _returned_nodes(field: Field, value: dict[str, Any]) -> list[Any]:
    for sub in field.selections:
        if sub.name == "nodes":
            return list(value.get(sub.key) or [])
        if sub.name == "edges":
            node_key = next((f.key for f in sub.selections if f.name == "node"), None)
            edges = value.get(sub.key) or []
            return [e.get(node_key) for e in edges] if node_key else [{} for _ in edges]
    return []
