"""``flask`` commands: set up, definitions, users, demo data, worker, sweeps, audit."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click
import yaml
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from workflow import outbox
from workflow.audit import record_event, verify_chain
from workflow.definitions.graph import to_dot, to_mermaid, to_svg
from workflow.definitions.lint import lint_program
from workflow.definitions.loader import (
    DefinitionError,
    definition_files,
    load_file,
    sync_definitions,
)
from workflow.models import ROLES, RoleGrant, User

from .extensions import db

definitions_cli = AppGroup("definitions", help="Load, lint, draw and simulate program definitions.")
users_cli = AppGroup("users", help="Manage user accounts.")
demo_cli = AppGroup("demo", help="Demo data.")
outbox_cli = AppGroup("outbox", help="The job outbox.")
audit_cli = AppGroup("audit", help="The audit trail.")
i18n_cli = AppGroup("i18n", help="Translations.")
backup_cli = AppGroup("backup", help="Back up and restore the database and stored files.")


def register_cli(app: Flask) -> None:
    for group in (
        definitions_cli,
        users_cli,
        demo_cli,
        outbox_cli,
        audit_cli,
        i18n_cli,
        backup_cli,
    ):
        app.cli.add_command(group)
    app.cli.add_command(setup_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(sweep_command)


@click.command("setup")
@click.option("--demo/--no-demo", default=False, help="Also load demo data (idempotent).")
def setup_command(demo: bool) -> None:
    """Create or upgrade the database, load definitions, optionally seed demo data."""
    from flask_migrate import upgrade

    # The embedded default keeps the SQLite file and attachments in the instance folder.
    Path(current_app.instance_path).mkdir(parents=True, exist_ok=True)
    Path(current_app.config["STORAGE_DIR"]).mkdir(parents=True, exist_ok=True)
    upgrade()
    for r in sync_definitions(db.session):
        click.echo(f"definition {r.code} v{r.version}" + (" (new)" if r.created else ""))
    outbox.commit(db.session)
    if demo:
        from .demo import seed_demo

        for line in seed_demo(db.session, date.today()):
            click.echo(line)
        outbox.commit(db.session)


# ---------------------------------------------------------------- definitions


@definitions_cli.command("load")
def definitions_load() -> None:
    """Store new or changed definition files as new versions."""
    try:
        results = sync_definitions(db.session)
    except DefinitionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for r in results:
        click.echo(f"{r.code}: version {r.version}" + (" (new)" if r.created else " (unchanged)"))
    outbox.commit(db.session)


@definitions_cli.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def definitions_lint(paths: tuple[Path, ...]) -> None:
    """Check definitions for problems the schema cannot see. Exit 1 on any problem."""
    files = list(paths) or definition_files()
    failed = False
    for path in files:
        try:
            program, _ = load_file(path)
        except DefinitionError as exc:
            click.echo(str(exc))
            failed = True
            continue
        problems = lint_program(program)
        for p in problems:
            click.echo(f"{path.name}: {p}")
        failed = failed or bool(problems)
        if not problems:
            click.echo(
                f"{path.name}: ok ({len(program.states)} states, "
                f"{len(program.transitions)} transitions)"
            )
    sys.exit(1 if failed else 0)


@definitions_cli.command("graph")
@click.argument("program_code")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg"]), default="mermaid")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None)
def definitions_graph(program_code: str, fmt: str, lang: str, output: Path | None) -> None:
    """Write the state diagram of a program (from its file in definitions/)."""
    path = next((p for p in definition_files() if p.stem == program_code), None)
    if path is None:
        raise click.BadParameter(f"no definitions/{program_code}.yaml")
    program, _ = load_file(path)
    text = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_svg}[fmt](program, lang)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@definitions_cli.command("simulate")
@click.argument("program_code")
@click.argument("datafile", type=click.Path(exists=True, path_type=Path))
def definitions_simulate(program_code: str, datafile: Path) -> None:
    """Run a scenario through the machine on a throw-away in-memory database."""
    from workflow.simulate import ScenarioFailed, memory_session, run_scenario

    data = yaml.safe_load(datafile.read_text(encoding="utf-8"))
    data.setdefault("program", program_code)
    if data["program"] != program_code:
        raise click.BadParameter(f"the data file is for '{data['program']}'")
    with memory_session() as session:
        try:
            run_scenario(session, data, click.echo)
        except ScenarioFailed as exc:
            click.echo(f"FAILED: {exc}", err=True)
            sys.exit(1)
    click.echo("OK")


# ---------------------------------------------------------------- users


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), required=True)
@click.option("--program", default=None, help="Limit the grants to one program code.")
@click.option("--district", default=None, help="Limit the grants to one district.")
@click.option("--lead", is_flag=True, help="Lead officer (may assign work).")
@click.password_option()
def users_create(
    email: str,
    name: str,
    roles: tuple[str, ...],
    program: str | None,
    district: str | None,
    lead: bool,
    password: str,
) -> None:
    """Create a staff user with one or more role grants."""
    from .security import hash_password, password_problems

    problems = password_problems(password)
    if problems:
        raise click.BadParameter("; ".join(p["en"] for p in problems), param_hint="password")
    if db.session.scalar(select(User).where(User.email == email.lower())):
        raise click.BadParameter("a user with this e-mail exists", param_hint="email")
    user = User(email=email.lower(), name=name, password_hash=hash_password(password))
    for role in roles:
        user.grants.append(
            RoleGrant(role=role, program_code=program, district=district, is_lead=lead)
        )
    db.session.add(user)
    db.session.flush()
    record_event(
        db.session,
        action="user.create",
        entity_type="user",
        entity_id=user.id,
        data={"roles": list(roles), "program": program, "district": district},
    )
    outbox.commit(db.session)
    click.echo(f"created user {user.id} {user.email}")


# ---------------------------------------------------------------- demo


@demo_cli.command("seed")
def demo_seed() -> None:
    """Organizations, one open call per program, a user per role, applications in
    several states. Safe to run twice."""
    from .demo import seed_demo

    for line in seed_demo(db.session, date.today()):
        click.echo(line)
    outbox.commit(db.session)


# ---------------------------------------------------------------- jobs


@click.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--with-scheduler/--without-scheduler",
    default=True,
    show_default=True,
    help="Also run RQ's scheduler, which re-queues jobs whose retry is due (RQ lets one "
    "worker per queue hold the scheduler lock, so every worker may ask).",
)
def worker_command(queues: tuple[str, ...], burst: bool, with_scheduler: bool) -> None:
    """Start an RQ worker on the given queues (default: all)."""
    from rq import Worker

    from .jobs import redis_connection, rq_queue

    if not current_app.config.get("REDIS_URL"):
        raise click.UsageError("REDIS_URL is not set: jobs run in-process, no worker is needed.")
    from workflow.documents.render import warm_up

    from . import jobs

    names = list(queues) or list(outbox.QUEUES)
    # Load fonts and the app once, before RQ forks a process per job; no pooled database
    # connection may cross a fork. RQ's forking Worker notices a killed job process and
    # retries at once; abandoned jobs of a dead worker are requeued by maintenance.
    warm_up(render_sample=True)
    jobs.storage()  # an S3 client's models and credentials, loaded once for every job
    jobs._WORKER_APP["app"] = current_app._get_current_object()
    db.engine.dispose()
    worker = Worker(
        [rq_queue(n) for n in names], connection=redis_connection(), maintenance_interval=60
    )
    worker.work(burst=burst, with_scheduler=with_scheduler)


@click.command("sweep")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
def sweep_command(today) -> None:
    """Fire due deadline triggers (lapsed supplements, ended notices). Cron-safe."""
    from workflow.operations.notice import close_notices
    from workflow.scheduler import sweep_deadlines

    day = today.date() if today else date.today()
    counts = sweep_deadlines(db.session, day)
    closed = close_notices(db.session, day)
    outbox.commit(db.session)
    relayed = outbox.relay_pending(db.session)
    click.echo(
        f"fired {counts['fired']}, skipped {counts['skipped']}, notices closed {closed}, "
        f"jobs relayed {relayed}"
    )


@outbox_cli.command("relay")
def outbox_relay() -> None:
    """Send jobs that were committed but never relayed (after a crash)."""
    click.echo(f"relayed {outbox.relay_pending(db.session)}")


@audit_cli.command("verify")
def audit_verify() -> None:
    """Recompute the audit hash chain; exit 1 if an event was edited or deleted."""
    result = verify_chain(db.session)
    if result.ok:
        click.echo(f"audit chain ok: {result.checked} events")
        return
    click.echo(f"AUDIT CHAIN BROKEN: {result.problem} (checked {result.checked})", err=True)
    sys.exit(1)


@i18n_cli.command("compile")
def i18n_compile() -> None:
    """Compile webapp/translations/en/*.yaml into the English message catalog."""
    from .i18n import compile_catalog

    click.echo(f"compiled {compile_catalog()} English messages")


@backup_cli.command("create")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def backup_create(target: Path) -> None:
    """Write every table and every stored file to a .tar.gz archive."""
    from workflow.backup import create_backup

    result = create_backup(db.session, Path(current_app.config["STORAGE_DIR"]), target)
    rows = sum(result.tables.values())
    click.echo(
        f"backup written to {target}: {rows} rows in {len(result.tables)} tables, "
        f"{result.files} files"
    )
    _warn_object_store("the objects in the S3 bucket are NOT in this archive")


@backup_cli.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def backup_restore(source: Path) -> None:
    """Restore an archive into an EMPTY database (run `flask db upgrade` first)."""
    from workflow.backup import BackupError, restore_backup

    try:
        result = restore_backup(db.session, Path(current_app.config["STORAGE_DIR"]), source)
    except BackupError as exc:
        db.session.rollback()
        click.echo(f"restore refused: {exc}", err=True)
        sys.exit(1)
    db.session.commit()
    click.echo(f"restored {sum(result.tables.values())} rows and {result.files} files")
    _warn_object_store(
        "the files went to STORAGE_DIR; copy them to the bucket under S3_PREFIX (same keys)"
    )


def _warn_object_store(what: str) -> None:
    """Backups copy STORAGE_DIR only: say so when the files live in an object store (back
    the bucket up with its own versioning or replication)."""
    if current_app.config.get("STORAGE_BACKEND") == "s3":
        click.echo(f"note: STORAGE_BACKEND=s3: {what}", err=True)
