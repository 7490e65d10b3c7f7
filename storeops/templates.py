"""Jinja2 templates, one folder per locale (templates/zh-CN/, templates/en/), sandboxed.

Edge module (Jinja2, files). Each template compiles once per library; rendering returns
the text and the SHA-256 digests of the source and the result, which go into the ledger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from storeops.spec import LOCALES


class TemplateRenderError(TemplateError):
    """Rendering failed (a missing variable, a bad filter argument): says which template,
    which locale and which line, so whoever maintains the template can fix it."""


def _render(template: Template, shown: str, context: dict[str, Any]) -> str:
    try:
        return template.render(context)
    except TemplateError as exc:
        line = _template_line(exc, template)
        where = f"template {shown}" + (f" line {line}" if line else "")
        message = getattr(exc, "message", None) or str(exc)
        raise TemplateRenderError(f"{where}: {type(exc).__name__}: {message}") from None


def _template_line(exc: BaseException, template: Template) -> int | None:
    """The template line the error came from (Jinja2 rewrites tracebacks to name it)."""
    names = {template.filename or "<template>", "<template>"}
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    template: str
    locale: str
    source_digest: str
    digest: str


class TemplateLibrary:
    """Templates under `root/<locale>/`. A missing locale falls back to the other one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._envs = {
            loc: SandboxedEnvironment(
                loader=FileSystemLoader(str(self.root / loc)),
                undefined=StrictUndefined,
                autoescape=False,
                keep_trailing_newline=True,
            )
            for loc in LOCALES
        }
        self._compiled: dict[tuple[str, str], Template] = {}

    def path(self, name: str, locale: str) -> Path:
        return self.root / locale / name

    def locales_of(self, name: str) -> list[str]:
        return [loc for loc in LOCALES if self.path(name, loc).is_file()]

    def source(self, name: str, locale: str) -> str:
        return self.path(name, locale).read_text(encoding="utf-8")

    def get(self, name: str, locale: str) -> Template:
        key = (name, locale)
        found = self._compiled.get(key)
        if found is None:
            found = self._envs[locale].get_template(name)
            self._compiled[key] = found
        return found

    def problems(self, name: str) -> list[tuple[str, str, int]]:
        """(code, message, line in the template) for a missing or uncompilable template."""
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return [("SOP130", f"template {name!r} must be a relative path under templates/", 1)]
        present = self.locales_of(name)
        if not present:
            wanted = " and ".join(_shown(self.path(name, loc)) for loc in LOCALES)
            return [("SOP130", f"template {name!r} does not exist; create {wanted}", 1)]
        found = []
        for loc in present:
            try:
                self.get(name, loc)
            except TemplateError as exc:
                line = getattr(exc, "lineno", None) or 1
                found.append(
                    (
                        "SOP131",
                        f"template {loc}/{name} line {line} does not compile: "
                        f"{getattr(exc, 'message', None) or exc}",
                        1,
                    )
                )
        return found

    def render_pinned(
        self, sources: dict[str, str], name: str, locale: str, context: dict[str, Any]
    ) -> Rendered:
        """Render the source a run pinned (by locale), not whatever the file says today."""
        use = locale if locale in sources else next(iter(sources))
        key = (f"pinned:{_digest(sources[use])}", use)
        template = self._compiled.get(key)
        if template is None:
            template = self._envs[use].from_string(sources[use])
            self._compiled[key] = template
        text = _render(template, f"{use}/{name} (as pinned by the run)", context)
        return Rendered(text, name, use, _digest(sources[use]), _digest(text))

    def render(self, name: str, locale: str, context: dict[str, Any]) -> Rendered:
        present = self.locales_of(name)
        use = locale if locale in present else (present[0] if present else locale)
        text = _render(self.get(name, use), f"{use}/{name}", context)
        return Rendered(
            text=text,
            template=name,
            locale=use,
            source_digest=_digest(self.source(name, use)),
            digest=_digest(text),
        )


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
