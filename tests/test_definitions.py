"""Definition schema, loader errors, lint, versioning."""

from pathlib import Path

import pytest
import yaml

from workflow.definitions.lint import lint_program
from workflow.definitions.loader import (
    DefinitionError,
    definition_files,
    load_file,
    parse_program,
    store_definition,
)
from workflow.models import ProgramDefinition

REFERENCE = Path(__file__).parents[1] / "definitions" / "certification_reward.yaml"


def reference() -> dict:
    return yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))


def broken(mutate) -> str:
    data = reference()
    mutate(data)
    return yaml.safe_dump(data, allow_unicode=True)


def _set(path, value):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _del(path):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


CASES = [
    ("unknown top-level key", _set(["colour"], "red"), "colour", "unknown key"),
    ("missing name", _del(["name"]), "name", "required key is missing"),
    (
        "bad field type",
        _set(["form", "sections", 0, "fields", 0, "type"], "number"),
        "form.sections[0].fields[0].type",
        "Input should be",
    ),
    (
        "choice without choices",
        _del(["form", "sections", 0, "fields", 0, "choices"]),
        "form.sections[0].fields[0]",
        "needs choices",
    ),
    (
        "transition to unknown state",
        _set(["transitions", 0, "dest"], "nowhere"),
        "",
        "unknown state 'nowhere'",
    ),
    ("bad state name", _set(["states", 0, "name"], "Draft State"), "states[0].name", "pattern"),
    (
        "bad regex",
        _set(["form", "sections", 0, "fields", 2, "pattern"], "(["),
        "form.sections[0].fields[2].pattern",
        "invalid regular expression",
    ),
    (
        "missing zh label",
        _set(["states", 0, "label"], {"en": "Draft"}),
        "states[0].label.zh",
        "required key is missing",
    ),
    (
        "bad effect",
        _set(["transitions", 0, "effects"], ["launch_rocket"]),
        "transitions[0].effects[0]",
        "Input should be",
    ),
    ("doc prefix param missing", _del(["parameters", "doc_prefix"]), "", "doc_prefix"),
    (
        "for_each without steps",
        _set(["award", "steps", 0, "for_each"], "invoices"),
        "award.steps[0]",
        "needs steps",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "where", "message"), CASES, ids=[c[0] for c in CASES])
def test_schema_rejects_broken_definitions(label, mutate, where, message):
    with pytest.raises(DefinitionError) as info:
        parse_program(broken(mutate), "broken.yaml")
    text = str(info.value)
    assert text.startswith("broken.yaml: ")
    assert any(where in path and message in msg for path, msg in info.value.problems), text


def test_invalid_yaml_names_the_line():
    with pytest.raises(DefinitionError) as info:
        parse_program("code: x\nname: [unclosed\n", "bad.yaml")
    assert "line" in str(info.value) and "bad.yaml" in str(info.value)


def test_every_shipped_definition_lints_clean():
    files = definition_files()
    assert {p.stem for p in files} >= {"certification_reward"}
    for path in files:
        program, _ = load_file(path)
        assert [str(p) for p in lint_program(program)] == [], path.name


LINT_CASES = [
    (
        "unknown field",
        _set(["eligibility", 0, "expr"], "form.no_such_field > 0"),
        "unknown field 'form.no_such_field'",
    ),
    ("unknown parameter", _set(["eligibility", 0, "expr"], "params.nope"), "unknown parameter"),
    ("unknown function", _set(["eligibility", 0, "expr"], "frobnicate(1)"), "unknown function"),
    ("unknown role", _set(["transitions", 0, "roles"], ["janitor"]), "unknown role 'janitor'"),
    (
        "unreachable state",
        lambda d: d["states"].append(
            {
                "name": "limbo",
                "label": {"zh": "无"},
                "public_label": {"zh": "无"},
                "stage": "closed",
                "terminal": True,
            }
        ),
        "unreachable",
    ),
    ("dead end", lambda d: _set_state(d, "withdrawn", terminal=False), "dead end"),
    (
        "rejection letter without a reason",
        lambda d: [
            t.update(reason_required=False) for t in d["transitions"] if t["trigger"] == "reject"
        ],
        "issues a rejection letter: set reason_required or default_reason",
    ),
    (
        "bare field name",
        _set(["eligibility", 0, "expr"], "unit_type == 'x'"),
        "must be written 'form.unit_type'",
    ),
]


def _set_state(data, name, **changes):
    for s in data["states"]:
        if s["name"] == name:
            s.update(changes)


@pytest.mark.parametrize(("label", "mutate", "message"), LINT_CASES, ids=[c[0] for c in LINT_CASES])
def test_lint_finds_problems(label, mutate, message):
    program = parse_program(broken(mutate), "x.yaml")
    problems = [str(p) for p in lint_program(program)]
    assert any(message in p for p in problems), problems


def test_changed_definition_becomes_new_version(session):
    text = REFERENCE.read_text(encoding="utf-8")
    program = parse_program(text)
    first = store_definition(session, program, text)
    again = store_definition(session, program, text)
    assert again.version == first.version and not again.created
    changed = text.replace('default: "30000"', 'default: "35000"')
    second = store_definition(session, parse_program(changed), changed)
    assert second.created and second.version == first.version + 1
    rows = session.query(ProgramDefinition).filter_by(code="certification_reward").count()
    assert rows == second.version


def test_lint_checks_row_conditions():
    mutate = _set(["eligibility", 0, "expr"], "all_rows(form.invoices, 'row.no_such > 0')")
    problems = [str(p) for p in lint_program(parse_program(broken(mutate), "x.yaml"))]
    assert any("unknown field 'row.no_such' in group 'invoices'" in p for p in problems), problems
    ok = _set(["eligibility", 0, "expr"], "all_rows(form.invoices, 'row.amount > 0')")
    assert not [p for p in lint_program(parse_program(broken(ok), "x.yaml")) if "row" in str(p)]
