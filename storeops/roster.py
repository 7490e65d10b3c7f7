"""The team roster (team.yaml): people, their roles, locale and channels.

Pure core: pydantic models and lookups only; `loader.load_roster` reads the file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from storeops.spec import NAME, Model, Text, localize

PERSON_ID = r"^[a-z][a-z0-9_.-]*$"


class Person(Model):
    name: str
    roles: list[Annotated[str, Field(pattern=NAME)]] = Field(default_factory=list)
    locale: Literal["zh-CN", "en"] = "zh-CN"
    channels: dict[str, str] = Field(
        default_factory=dict, description="channel name -> address (email, wecom, dingtalk...)"
    )
    active: bool = True


class Roster(Model):
    """Who holds which role. Order of people is kept: it is the order of candidates."""

    roles: dict[Annotated[str, Field(pattern=NAME)], Text] = Field(default_factory=dict)
    people: dict[Annotated[str, Field(pattern=PERSON_ID)], Person] = Field(default_factory=dict)

    def holders(self, role: str) -> list[str]:
        return [pid for pid, p in self.people.items() if p.active and role in p.roles]

    def roles_of(self, person: str) -> list[str]:
        found = self.people.get(person)
        return list(found.roles) if found is not None and found.active else []

    def role_title(self, role: str, locale: str = "en") -> str:
        return localize(self.roles.get(role), locale) or role

    def locale_of(self, person: str) -> str:
        found = self.people.get(person)
        return found.locale if found is not None else "en"


EMPTY = Roster()
