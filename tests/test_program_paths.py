"""Every scenario in tests/scenarios/<program>/ walks one path through a program with
the same runner as ``flask definitions simulate``; expected awards are worked out by
hand in each file's comments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workflow.simulate import run_scenario

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*/*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.name}/{p.stem}" for p in SCENARIOS])
def test_scenario(path, session):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["program"] == path.parent.name
    lines: list[str] = []
    run_scenario(session, data, lines.append)
    assert lines  # the runner reports every step


def test_every_program_has_scenarios():
    programs = {p.stem for p in (Path(__file__).parents[1] / "definitions").glob("*.yaml")}
    covered = {p.parent.name for p in SCENARIOS}
    assert programs <= covered, f"programs without scenarios: {sorted(programs - covered)}"
