"""Where storeops keeps its state and finds its library: one place for CLI, flows and tests.

Edge module. Every setting has a command-line override, an environment variable and an
embedded default, so `storeops demo` works on a fresh clone with nothing configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storeops.errors import ConfigError, DefinitionError


def project_root() -> Path:
    """The nearest folder (from the working directory up) with sops/ and templates/."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "sops").is_dir() and (folder / "templates").is_dir():
            return folder
    return here


class Settings:
    """STOREOPS_HOME, STOREOPS_LEDGER, STOREOPS_SOPS, STOREOPS_TEMPLATES, STOREOPS_ROSTER,
    STOREOPS_LANG — each overridden by the matching argument when it is given."""

    def __init__(
        self,
        *,
        home: str | None = None,
        ledger: str | None = None,
        sops: str | None = None,
        templates: str | None = None,
        roster: str | None = None,
        lang: str | None = None,
    ) -> None:
        env = os.environ.get
        root = project_root()
        self.home = Path(home or env("STOREOPS_HOME") or root / ".storeops")
        self.ledger_url = ledger or env("STOREOPS_LEDGER") or str(self.home / "ledger.db")
        self.sops = Path(sops or env("STOREOPS_SOPS") or root / "sops")
        self.templates = Path(templates or env("STOREOPS_TEMPLATES") or root / "templates")
        self.roster_path = Path(roster or env("STOREOPS_ROSTER") or self.sops / "team.yaml")
        chosen = lang or env("STOREOPS_LANG") or env("LANG", "")
        self.locale = "zh-CN" if chosen.lower().startswith("zh") else "en"
        self._opened: list[Any] = []

    def environment(self) -> dict[str, str]:
        """The variables that make another process (a flow run, a worker) see the same."""
        return {
            "STOREOPS_HOME": str(self.home.resolve()),
            "STOREOPS_LEDGER": self.ledger_url
            if "://" in self.ledger_url
            else str(Path(self.ledger_url).resolve()),
            "STOREOPS_SOPS": str(self.sops.resolve()),
            "STOREOPS_TEMPLATES": str(self.templates.resolve()),
            "STOREOPS_ROSTER": str(self.roster_path.resolve()),
        }

    def roster(self) -> Any:
        from storeops.loader import load_roster

        if not self.roster_path.is_file():
            raise ConfigError(
                f"no roster at {self.roster_path}; give --roster FILE (or STOREOPS_ROSTER), "
                "or create team.yaml beside the SOPs"
            )
        roster, problems = load_roster(self.roster_path)
        if roster is None:
            raise DefinitionError(problems)
        return roster

    def engine(self) -> Any:
        """An Engine over this ledger, library, roster and templates, acting through the
        connectors configured in the environment."""
        from connectors.executor import ConnectorExecutor
        from connectors.notify import ChannelOutbox
        from connectors.secrets import resolve_environment
        from storeops.ledger import open_ledger
        from storeops.runtime import Engine
        from storeops.templates import TemplateLibrary

        if not self.sops.is_dir():
            raise ConfigError(f"no SOP library at {self.sops}; give --sops DIR (or STOREOPS_SOPS)")
        if "://" not in self.ledger_url:
            Path(self.ledger_url).parent.mkdir(parents=True, exist_ok=True)
        templates = TemplateLibrary(self.templates)
        roster = self.roster()
        environ = resolve_environment(os.environ)  # `prefect-secret:BLOCK` values resolved
        engine = Engine(
            ledger=open_ledger(self.ledger_url),
            sops_dir=self.sops,
            templates=templates,
            roster=roster,
            executor=ConnectorExecutor(environ, home=self.home, sops=self.sops),
            outbox=ChannelOutbox.from_env(roster, environ),
            inbox_url=self.inbox_url(),
        )
        self._opened = [e for e in self._opened if not e.closed] + [engine]
        return engine

    def inbox_url(self) -> str:
        """Where task links point: the running inbox (inbox.json), else STOREOPS_INBOX_URL,
        else the usual loopback address."""
        from storeops.wake import INBOX_FILE, recorded_url

        return recorded_url(self.home / INBOX_FILE) or os.environ.get(
            "STOREOPS_INBOX_URL", "http://127.0.0.1:8765"
        )

    def close(self) -> None:
        """Close every engine this object made (ledger handles, HTTP pools); idempotent."""
        while self._opened:
            self._opened.pop().close()
