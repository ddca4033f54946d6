"""docs/AUTHORING.md cannot rot: its minimal example definition parses and lints clean,
its example scenario runs through the simulator, every YAML block in it is valid YAML, and
every top-level key, expression function, effect, ``app.*`` fact, stage, field type,
parameter type and role the code knows is documented there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import yaml

import workflow.simulate as simulate
from workflow.definitions import schema
from workflow.definitions.lint import APP_FACTS, TABLE_FUNCTIONS, lint_program
from workflow.definitions.loader import definition_files, parse_program
from workflow.engine import clear_cache
from workflow.expressions import FUNCTIONS, ROW_FUNCTIONS
from workflow.models import ROLES, SYSTEM_ROLES

GUIDE = Path(__file__).parents[1] / "docs" / "AUTHORING.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[a-z]*)\s*$")


def yaml_blocks() -> list[str]:
    """Every ```yaml block of the guide, de-indented like CommonMark does for fences
    inside list items (up to the fence's own indentation is removed from each line)."""
    blocks: list[str] = []
    current: list[str] | None = None
    indent = 0
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if current is None:
            if match and match["lang"] == "yaml":
                current, indent = [], len(match["indent"])
            continue
        if match and not match["lang"]:
            blocks.append("\n".join(current) + "\n")
            current = None
            continue
        strip = min(indent, len(line) - len(line.lstrip(" ")))
        current.append(line[strip:])
    assert current is None, "an unclosed ```yaml block in docs/AUTHORING.md"
    return blocks


def marked_block(marker: str) -> str:
    """The first yaml block whose first line is the comment ``# example: <marker>``."""
    for block in yaml_blocks():
        if block.splitlines()[0].strip() == f"# example: {marker}":
            return block
    raise AssertionError(f"docs/AUTHORING.md has no ```yaml block marked '# example: {marker}'")


@pytest.fixture
def clean_machine_cache():
    """Compiled machines are cached by stored-definition id; the in-memory database of a
    simulation reuses ids of the test database, so nothing may leak either way."""
    clear_cache()
    yield
    clear_cache()


def test_minimal_example_parses_and_lints_clean():
    program = parse_program(marked_block("minimal"), "docs/AUTHORING.md (minimal)")
    assert lint_program(program) == []
    shipped = {p.stem for p in definition_files()}
    assert program.code not in shipped, "the example must not shadow a shipped program"


def test_minimal_scenario_runs(tmp_path, monkeypatch, clean_machine_cache):
    definition = marked_block("minimal")
    code = yaml.safe_load(definition)["code"]
    (tmp_path / f"{code}.yaml").write_text(definition, encoding="utf-8")
    monkeypatch.setattr(simulate, "DEFINITIONS_DIR", tmp_path)
    scenario = yaml.safe_load(marked_block("minimal-scenario"))
    assert scenario["program"] == code
    lines: list[str] = []
    with simulate.memory_session() as session:
        sc = simulate.run_scenario(session, scenario, lines.append)
    output = "\n".join(lines)
    # The guide quotes this output; keep the quoted lines true.
    for quoted in (
        "step 6: expected PermissionDenied",
        "registrations = 3   (count(form.registrations))",
        "award: 1800.00 yuan",
        "-- call committed 1800.00 of 100000.00",
    ):
        assert quoted in output
    assert sc.apps[0].number == "RZ2026-000001"


def test_every_yaml_block_is_valid_yaml():
    blocks = yaml_blocks()
    assert len(blocks) > 20
    for block in blocks:
        yaml.safe_load(block)


def _missing(names: set[str], template: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return sorted(n for n in names if template.format(n) not in text)


def test_every_top_level_key_has_a_section():
    assert _missing(set(schema.Program.model_fields), "### `{}`") == []


def test_every_function_effect_and_fact_is_documented():
    functions = set(FUNCTIONS) | set(TABLE_FUNCTIONS) | set(ROW_FUNCTIONS)
    assert _missing(functions, "`{}(") == []
    assert _missing(set(schema.EFFECTS), "`{}`") == []
    assert _missing(set(APP_FACTS), "`app.{}`") == []


def test_every_stage_type_and_role_is_documented():
    stages = set(get_args(schema.State.model_fields["stage"].annotation))
    assert _missing(stages, "`{}`") == []
    assert _missing(set(schema.FIELD_TYPES) | set(schema.PARAM_TYPES), "`{}`") == []
    assert _missing(set(ROLES) | set(SYSTEM_ROLES), "`{}`") == []
