"""`storeops passwd PERSON` and `storeops token PERSON`: inbox credentials from the CLI.

Edge module, standard library and storeops.web.auth only (no FastAPI import), so the CLI
stays fast. Both check the person against the roster; secrets are never echoed except the
new token, which is shown once.

    p = add_parser("passwd", help="set a person's inbox password")
    p.add_argument("person")
    p.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    p.set_defaults(func=cmd_passwd)

    p = add_parser("token", help="issue a person's inbox sign-in token (replaces the old)")
    p.add_argument("person")
    p.add_argument("--revoke", action="store_true", help="remove password and token instead")
    p.set_defaults(func=cmd_token)
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from storeops.errors import ConfigError
from storeops.web.auth import CredentialError, issue_token, revoke, set_password


def _person(args: argparse.Namespace, cfg: Any) -> str:
    person = str(args.person)
    roster = cfg.roster()
    if person not in roster.people:
        known = ", ".join(roster.people) or "nobody"
        raise ConfigError(f"{person!r} is not in the roster {cfg.roster_path} (known: {known})")
    return person


def cmd_passwd(args: argparse.Namespace, cfg: Any) -> int:
    """Set PERSON's password: asked twice on a terminal, or one line of stdin."""
    person = _person(args, cfg)
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"new inbox password for {person}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing changed")
    try:
        set_password(cfg.home, person, password)
    except CredentialError as exc:
        raise ConfigError(str(exc)) from exc
    print(f"password set for {person}; their earlier inbox sessions are signed out")
    return 0


def cmd_token(args: argparse.Namespace, cfg: Any) -> int:
    """Print a new sign-in token for PERSON (only its hash is kept), or revoke all."""
    person = _person(args, cfg)
    if getattr(args, "revoke", False):
        revoke(cfg.home, person)
        print(f"{person}: password and token removed, sessions signed out")
        return 0
    token = issue_token(cfg.home, person)
    print(token)
    print(f"sign-in token for {person}: shown once; it replaces any earlier token", file=sys.stderr)
    return 0
