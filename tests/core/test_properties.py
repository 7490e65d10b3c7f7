"""Property tests of the pure machine: every valid SOP ends, replay is exact, runs repeat.

Hypothesis drives each fixture SOP (and the shipped library) with random people, random
connector outcomes and random passage of time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storeops import machine as m
from storeops.expressions import Expressions
from storeops.loader import NOT_SOPS, Checker, load_roster
from storeops.spec import SopSpec
from storeops.templates import TemplateLibrary
from tests.conftest import FIXTURES, ROOT, VALID
from tests.core.strategies import Driver, from_data


def _specs() -> list[SopSpec]:
    found = []
    for folder, templates in ((VALID, FIXTURES / "templates"), (ROOT / "sops", ROOT / "templates")):
        roster, _ = load_roster(folder / "team.yaml")
        checker = Checker(roster=roster, templates=TemplateLibrary(templates))
        for path in sorted(folder.glob("*.yaml")):
            if path.name in NOT_SOPS:
                continue
            checker.library = folder
            loaded, problems = checker.load(path)
            assert loaded is not None, problems
            found.append(loaded.spec)
    return found


SPECS = _specs()
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("sop", SPECS, ids=lambda s: s.id)
@PROPERTY
@given(data=st.data())
def test_random_runs_reach_an_end_and_replay_exactly(sop: SopSpec, data: Any) -> None:
    driver = Driver(sop, from_data(data))
    driver.play()
    assert driver.run.status in ("succeeded", "failed")
    replayed = m.Run(sop, Expressions(), driver.run_id).replay(driver.log)
    assert [] == replayed.advance(driver.now)
    assert driver.run.snapshot() == replayed.snapshot()


@pytest.mark.parametrize("sop", SPECS, ids=lambda s: s.id)
@PROPERTY
@given(data=st.data())
def test_replay_midway_gives_the_same_state_and_commands(sop: SopSpec, data: Any) -> None:
    driver = Driver(sop, from_data(data))
    driver.settle(cooperative=False)
    for _ in range(data.draw(st.integers(1, 25))):
        if driver.run.status != "running":
            break
        driver.act(cooperative=False)
        driver.settle(cooperative=False)
    replayed = m.Run(sop, Expressions(), driver.run_id).replay(driver.log)
    assert [] == replayed.advance(driver.now)
    assert driver.run.snapshot() == replayed.snapshot()
    assert [e.id for e in driver.run.effects()] == [e.id for e in replayed.effects()]
    assert driver.run.wake_at() == replayed.wake_at()


@pytest.mark.parametrize("sop", SPECS, ids=lambda s: s.id)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_same_inputs_give_the_same_events(sop: SopSpec, seed: int) -> None:
    def play() -> list[tuple[str, int, Any]]:
        import random

        rng = random.Random(seed)
        driver = Driver(sop, lambda options: rng.choice(list(options)))
        driver.play()
        return [(e.type, e.at, e.data) for e in driver.log]

    assert play() == play()


def test_fixture_set_covers_every_state_type() -> None:
    from storeops.spec import STATE_TYPES, all_states

    seen = {state.type for sop in SPECS for state in all_states(sop).values()}
    assert set(STATE_TYPES) == seen
    assert Path(VALID).is_dir()
