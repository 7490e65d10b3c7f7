"""The dependency direction holds: the pure core imports the standard library and pydantic.

A small AST check instead of import-linter: it reads every module's imports (including
ones inside functions) and fails naming the module and the forbidden import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import storeops
from tests.conftest import ROOT

PURE_CORE = {
    "spec",
    "machine",
    "checks",
    "diagnostics",
    "durations",
    "errors",
    "operations",
    "roster",
    "timeline",
    "graph",
    "schema",
}
NEVER_IN_STOREOPS = {"prefect", "httpx"}
NEVER_IN_CORE = NEVER_IN_STOREOPS | {
    "ruamel",
    "jinja2",
    "sqlite3",
    "asyncpg",
    "psycopg",
    "sqlalchemy",
    "storeops.ledger.sqlite",
    "storeops.yamlsource",
    "storeops.loader",
    "storeops.expressions",
    "storeops.templates",
    "storeops.runtime",
}
STDLIB_IO = {"socket", "subprocess", "random", "time", "os"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _forbidden(name: str, banned: set[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def test_pure_core_imports_no_edges_and_no_io() -> None:
    for module in sorted(PURE_CORE):
        names = imports(ROOT / "storeops" / f"{module}.py")
        bad = sorted(n for n in names if _forbidden(n, NEVER_IN_CORE | STDLIB_IO))
        assert [] == bad, f"storeops/{module}.py imports {bad}"


def test_no_storeops_module_imports_prefect_or_httpx_yet() -> None:
    for path in sorted((ROOT / "storeops").rglob("*.py")):
        bad = sorted(n for n in imports(path) if _forbidden(n, NEVER_IN_STOREOPS))
        assert [] == bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_ledger_contract_imports_no_backend() -> None:
    for name in ("base.py", "canonical.py", "prepare.py"):
        bad = sorted(
            n
            for n in imports(ROOT / "storeops" / "ledger" / name)
            if _forbidden(n, {"sqlite3", "asyncpg", "storeops.machine", "prefect"})
        )
        assert [] == bad, name


def test_public_api_is_what_all_says() -> None:
    exported = {name for name in dir(storeops) if not name.startswith("_")}
    modules = {name for name in exported if type(getattr(storeops, name)).__name__ == "module"}
    assert sorted(exported - modules) == sorted(n for n in storeops.__all__ if n != "__version__")
    assert "0.1.0" == storeops.__version__
