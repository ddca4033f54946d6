"""Load, validate and version program definitions.

A YAML file is parsed and validated against :mod:`workflow.definitions.schema`; errors
name the file, the path inside it and what is wrong. Stored definitions are immutable
rows keyed by content hash: a changed file becomes a new version, and applications stay
on the version they started with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import ProgramDefinition
from .schema import Program

DEFINITIONS_DIR = Path(__file__).resolve().parents[2] / "definitions"


class DefinitionError(Exception):
    """A definition file is invalid. ``problems`` lists (path, message) pairs."""

    def __init__(self, filename: str, problems: list[tuple[str, str]]):
        self.filename = filename
        self.problems = problems
        lines = [f"{filename}: {path or '(top)'}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_program(text: str, filename: str = "<string>") -> Program:
    """Parse YAML text into a validated Program, or raise DefinitionError."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DefinitionError(filename, [(where, f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise DefinitionError(filename, [("", "the file must be a mapping of keys")])
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see docs/AUTHORING.md)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            problems.append((_loc(tuple(err["loc"])), msg))
        raise DefinitionError(filename, problems) from None


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def definition_files(directory: Path | None = None) -> list[Path]:
    directory = directory or DEFINITIONS_DIR
    return sorted(p for p in directory.glob("*.yaml") if p.is_file())


def load_file(path: Path) -> tuple[Program, str]:
    text = path.read_text(encoding="utf-8")
    program = parse_program(text, path.name)
    if program.code != path.stem:
        raise DefinitionError(
            path.name, [("code", f"code '{program.code}' must match the file name '{path.stem}'")]
        )
    return program, text


@dataclass(frozen=True)
class SyncResult:
    code: str
    version: int
    created: bool


def sync_definitions(session: Session, directory: Path | None = None) -> list[SyncResult]:
    """Store every definition file whose content is new as the next version of its program.

    Flushes; the caller commits. Raises DefinitionError on the first invalid file before
    writing anything.
    """
    loaded = [load_file(p) for p in definition_files(directory)]
    results = []
    for program, text in loaded:
        results.append(store_definition(session, program, text))
    return results


def store_definition(session: Session, program: Program, text: str) -> SyncResult:
    digest = content_hash(text)
    existing = session.scalar(
        select(ProgramDefinition).where(
            ProgramDefinition.code == program.code, ProgramDefinition.content_hash == digest
        )
    )
    if existing is not None:
        return SyncResult(program.code, existing.version, False)
    last = session.scalar(
        select(func.max(ProgramDefinition.version)).where(ProgramDefinition.code == program.code)
    )
    row = ProgramDefinition(
        code=program.code, version=(last or 0) + 1, content_hash=digest, source_yaml=text
    )
    session.add(row)
    session.flush()
    return SyncResult(program.code, row.version, True)


def latest_definition(session: Session, code: str) -> ProgramDefinition | None:
    return session.scalar(
        select(ProgramDefinition)
        .where(ProgramDefinition.code == code)
        .order_by(ProgramDefinition.version.desc())
        .limit(1)
    )
