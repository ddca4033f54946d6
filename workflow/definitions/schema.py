"""The schema of a program definition (one YAML file per program in ``definitions/``).

Pydantic models with ``extra="forbid"``: a misspelt key is an error, not a silent no-op.
``docs/AUTHORING.md`` explains every key with examples from the shipped programs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY = r"^[a-z][a-z0-9_]*$"
KeyStr = Annotated[str, Field(pattern=KEY, max_length=60)]

FIELD_TYPES = (
    "text",
    "textarea",
    "integer",
    "decimal",
    "money",
    "percent",
    "date",
    "boolean",
    "choice",
    "multichoice",
    "email",
    "phone",
    "credit_code",
)
PARAM_TYPES = ("money", "decimal", "percent", "integer", "boolean", "date", "text", "choice")
EFFECTS = (
    "freeze_snapshot",
    "assign_number",
    "compute_award",
    "reserve_budget",
    "release_budget",
    "set_deadline",
    "clear_deadline",
    "open_supplement",
    "close_supplement",
    "record_payment",
    "mark_clawback",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(Strict):
    """A bilingual label: Simplified Chinese is required, English optional."""

    zh: str = Field(min_length=1)
    en: str = ""

    def get(self, lang: str) -> str:
        return (self.en if lang == "en" and self.en else self.zh) or self.zh


class Choice(Strict):
    value: str
    label: Text


class FieldDef(Strict):
    key: KeyStr
    type: Literal[FIELD_TYPES]  # type: ignore[valid-type]
    label: Text
    help: Text | None = None
    required: bool = False
    # Expression over form (and row for repeatable groups); hidden fields are not validated.
    visible_if: str | None = None
    choices: list[Choice] | None = None
    min: str | None = None  # numbers as strings: exact Decimals
    max: str | None = None
    max_length: int | None = Field(default=None, ge=1, le=20000)
    pattern: str | None = None
    pattern_message: Text | None = None
    # Used by the duplicate-funding check: the same value may be rewarded only once.
    dedupe_key: str | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _numbers_as_text(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _choices_for_choice_types(self) -> FieldDef:
        if self.type in ("choice", "multichoice") and not self.choices:
            raise ValueError(f"field '{self.key}' of type {self.type} needs choices")
        if self.type not in ("choice", "multichoice") and self.choices:
            raise ValueError(f"field '{self.key}' has choices but type {self.type}")
        return self


class Section(Strict):
    key: KeyStr
    title: Text
    help: Text | None = None
    repeatable: bool = False
    min_rows: int = Field(default=0, ge=0)
    max_rows: int = Field(default=50, ge=1, le=500)
    visible_if: str | None = None
    fields: list[FieldDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_fields(self) -> Section:
        keys = [f.key for f in self.fields]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise ValueError(f"duplicate field keys in section '{self.key}': {sorted(dupes)}")
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows is larger than max_rows")
        return self


class Form(Strict):
    sections: list[Section] = Field(min_length=1)


class Material(Strict):
    kind: KeyStr
    label: Text
    help: Text | None = None
    required: bool = True
    required_if: str | None = None
    types: list[Literal["pdf", "jpg", "png", "xlsx", "docx", "zip"]] = ["pdf", "jpg", "png"]
    max_size_mb: int = Field(default=20, ge=1, le=200)
    max_files: int = Field(default=5, ge=1, le=50)


class Parameter(Strict):
    type: Literal[PARAM_TYPES]  # type: ignore[valid-type]
    default: Any
    label: Text
    doc: Text
    # True when the default is an assumption, not a published rule (programs.md [ASSUME]).
    assumption: bool = False
    source: str | None = None
    choices: list[Choice] | None = None


class Rule(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=20)]
    expr: str
    applicant_message: Text
    reviewer_message: Text
    source: str | None = None
    # 'error' blocks submission/approval; 'warning' is shown but does not block.
    severity: Literal["error", "warning"] = "error"
    # Some facts can only be checked by an officer (e.g. the certificate is still valid on
    # the national platform today): such rules pass at pre-check and are confirmed at review.
    officer_confirms: bool = False


class AwardStep(Strict):
    name: KeyStr
    expr: str | None = None
    label: Text | None = None
    for_each: KeyStr | None = None
    steps: list[AwardStep] | None = None
    result: KeyStr | None = None

    @model_validator(mode="after")
    def _shape(self) -> AwardStep:
        if self.for_each:
            if not self.steps or not self.result or self.expr:
                raise ValueError(
                    f"step '{self.name}' with for_each needs steps and result, and no expr"
                )
        elif not self.expr or self.steps:
            raise ValueError(f"step '{self.name}' needs an expr (and no nested steps)")
        return self


class Allocation(Strict):
    """How an oversubscribed budget is shared: rank order until exhausted, or pro-rata."""

    method: Literal["rank_order", "pro_rata", "none"] = "rank_order"
    # Expression giving the sort key (ascending) for rank_order, e.g. a first-issue date.
    order_by: str | None = None
    order_label: Text | None = None


class Award(Strict):
    steps: list[AwardStep] = Field(min_length=1)
    result: KeyStr
    allocation: Allocation = Allocation()


class Criterion(Strict):
    key: KeyStr
    label: Text
    max_points: str
    weight: str = "1"
    help: Text | None = None

    @field_validator("max_points", "weight", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        return str(v)


class Scoring(Strict):
    """An expert score sheet and how expert scores are combined and ranked."""

    rubric: list[Criterion] = Field(min_length=1)
    # Names of call parameters (so each call can change them).
    pass_mark_param: KeyStr
    drop_extremes_param: KeyStr | None = None
    min_experts_param: KeyStr | None = None
    funded_count_param: KeyStr | None = None
    # Criterion keys compared in order to break ties, then the field below.
    tie_breakers: list[KeyStr] = []
    tie_break_field: str | None = None


class DocumentSpec(Strict):
    kind: Literal["approval", "rejection", "recognition"]
    template: str = Field(pattern=r"^[a-z_]+\.html$")


class State(Strict):
    name: KeyStr
    label: Text
    public_label: Text
    terminal: bool = False
    applicant_editable: bool = False
    # What the applicant should do now, shown on the status page.
    applicant_hint: Text | None = None
    # When the application's deadline passes in this state, the sweep fires this trigger.
    deadline_trigger: KeyStr | None = None
    # Keep the running deadline while here (e.g. objection review inside a public notice):
    # it is neither cleared nor acted on until the application returns.
    pauses_deadline: bool = False
    documents: list[DocumentSpec] = []
    # Stage family for queues and dashboards.
    stage: Literal[
        "draft",
        "district",
        "eligibility",
        "supplement",
        "expert",
        "ranking",
        "approval",
        "notice",
        "objection",
        "decided",
        "payment",
        "closed",
    ]


class Transition(Strict):
    trigger: KeyStr
    source: list[KeyStr]
    dest: KeyStr
    label: Text
    roles: list[KeyStr] = Field(min_length=1)
    guards: list[str] = []
    reason_required: bool = False
    # Reason recorded when none is given (system transitions such as a lapsed supplement).
    default_reason: Text | None = None
    # The sub-form the actor fills in: a supplement request, a score sheet, an award correction.
    subform: Literal["none", "supplement_request", "score_sheet", "objection_decision"] = "none"
    # Working days until the deadline set when entering ``dest`` (int or a parameter name).
    deadline_working_days: int | str | None = None
    effects: list[Literal[EFFECTS]] = []  # type: ignore[valid-type]
    # Shown as a button in the workbench; batch-capable transitions appear in batch bars.
    batch: bool = False
    style: Literal["primary", "secondary", "danger", "success", "warning"] = "secondary"

    @field_validator("source", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class FourEyes(Strict):
    enabled: bool = True
    review_triggers: list[KeyStr] = []
    approval_triggers: list[KeyStr] = []


class Program(Strict):
    code: KeyStr
    name: Text
    short_name: Text | None = None
    summary: Text
    how_award_is_computed: Text
    sources: list[str] = []
    applicant_types: list[str] = Field(min_length=1)
    number_prefix: Annotated[str, Field(pattern=r"^[A-Z]{2,6}$")]
    doc_prefix_param: KeyStr = "doc_prefix"
    parameters: dict[KeyStr, Parameter]
    tables: list[KeyStr] = []
    form: Form
    materials: list[Material] = []
    eligibility: list[Rule] = []
    award: Award
    scoring: Scoring | None = None
    four_eyes: FourEyes = FourEyes()
    initial: KeyStr = "draft"
    states: list[State] = Field(min_length=2)
    transitions: list[Transition] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistency(self) -> Program:
        names = [s.name for s in self.states]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate state names: {sorted(dupes)}")
        known = set(names)
        if self.initial not in known:
            raise ValueError(f"initial state '{self.initial}' is not a declared state")
        for i, t in enumerate(self.transitions):
            for s in [*t.source, t.dest]:
                if s not in known:
                    raise ValueError(f"transitions[{i}] ({t.trigger}): unknown state '{s}'")
        section_keys = [s.key for s in self.form.sections]
        if len(section_keys) != len(set(section_keys)):
            raise ValueError("duplicate section keys in form")
        # Non-repeatable sections share one namespace (form.<field>); repeatable sections
        # are lists under their own key (form.<section>), so the names must not collide.
        flat = [f.key for s in self.form.sections if not s.repeatable for f in s.fields]
        flat += [s.key for s in self.form.sections if s.repeatable]
        dupes = {k for k in flat if flat.count(k) > 1}
        if dupes:
            raise ValueError(f"form keys used twice across sections: {sorted(dupes)}")
        rule_ids = [r.id for r in self.eligibility]
        if len(rule_ids) != len(set(rule_ids)):
            raise ValueError("duplicate eligibility rule ids")
        if self.doc_prefix_param not in self.parameters:
            raise ValueError(f"parameters must define '{self.doc_prefix_param}' (decision prefix)")
        return self

    # ------------------------------------------------------------ helpers

    def state(self, name: str) -> State:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    def section(self, key: str) -> Section:
        for s in self.form.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    def repeatable_sections(self) -> list[Section]:
        return [s for s in self.form.sections if s.repeatable]

    def all_fields(self) -> dict[str, FieldDef]:
        """Top-level (non-repeatable) fields by key."""
        return {f.key: f for s in self.form.sections if not s.repeatable for f in s.fields}

    def default_params(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.parameters.items()}
