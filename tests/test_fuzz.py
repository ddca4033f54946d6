"""Property-based tests (hypothesis): garbage, huge, Unicode-edge and injection strings in
every form field of every program, in expressions and in the domain parsers never crash;
they give a clear message or a clean value."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import reliability
from workflow.definitions.loader import definition_files, load_file
from workflow.domain import is_valid_credit_code, parse_doc_number, rmb_upper
from workflow.expressions import ExpressionError, Record, evaluate
from workflow.validation import clean_form, submission_errors

PROGRAMS = {p.stem: load_file(p)[0] for p in definition_files()}

INJECTIONS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE users; --",
    "{{7*7}}",
    "${7*7}",
    "../../etc/passwd",
    "file:///etc/passwd",
    "\x00",
    "\u202e\u0645",
    "𠀀𪚥",
    "﷽" * 50,
    "1e999999",
    "NaN",
    "-Infinity",
    "0x1F",
    "9" * 400,
    " ",
    "\t\n",
    "２０２５－０１－０１",
    "１２３",
    "true",
    "null",
    "[]",
    "{}",
    "%s%s%n",
]
garbage = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=60),
    st.sampled_from(["中" * 5000, "a" * 30000, "\U0001f600" * 2000]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=10), max_size=5),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
_COUNT = {"inputs": 0}


def _form_data(program, draw_value):
    data = {}
    for section in program.form.sections:
        if section.repeatable:
            data[section.key] = [{f.key: draw_value() for f in section.fields} for _ in range(2)]
        else:
            for f in section.fields:
                data[f.key] = draw_value()
    return data


@pytest.mark.parametrize("code", sorted(PROGRAMS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_field_of_every_program_survives_garbage(code, data):
    program = PROGRAMS[code]
    form = _form_data(program, lambda: data.draw(garbage))
    cleaned, errors = clean_form(program, form)
    _COUNT["inputs"] += 1
    for key, message in errors.items():
        assert message["zh"] and message["en"], key
    problems = submission_errors(program, form, {}, None)
    assert all(m["zh"] and m["en"] for m in problems.values())
    # What is stored is plain JSON of the declared shape, never the raw object.
    for section in program.form.sections:
        if section.repeatable:
            assert isinstance(cleaned[section.key], list)
    reliability.record(
        "test_every_field_of_every_program_survives_garbage",
        form_submissions_tried=_COUNT["inputs"],
        failures=0,
    )


@settings(max_examples=300, deadline=None)
@given(source=st.one_of(st.text(max_size=400), st.sampled_from(INJECTIONS)))
def test_expressions_never_escape(source):
    with contextlib.suppress(ExpressionError):
        evaluate(source, {"form": Record({"a": 1}, "form")})


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=80), st.sampled_from(INJECTIONS)))
def test_doc_numbers_and_credit_codes_never_crash(text):
    assert is_valid_credit_code(text) in (True, False)
    try:
        prefix, year, seq = parse_doc_number(text)
        assert seq >= 1 and 1000 <= year <= 9999 and prefix
    except ValueError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=10**12),
        st.text(max_size=20),
    )
)
def test_rmb_upper_is_total_or_clear(value):
    try:
        out = rmb_upper(value)
        assert out.startswith("人民币")
    except (ValueError, TypeError) as exc:
        assert str(exc)


def test_fuzz_module_covers_every_program():
    assert set(PROGRAMS) == {p.stem for p in Path(definition_files()[0]).parent.glob("*.yaml")}
