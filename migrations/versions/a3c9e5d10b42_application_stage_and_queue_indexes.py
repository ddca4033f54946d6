"""application stage column and reviewer-queue indexes

Revision ID: a3c9e5d10b42
Revises: 6fb527619322
Create Date: 2026-11-21 19:20:00

``applications.stage`` (the state's stage family in its definition) lets the reviewer
queues filter, count and page by stage on an index; see workflow/queues.py and
docs/PERFORMANCE.md. The backfill reads each stored definition version's states.
"""

import sqlalchemy as sa
from alembic import op

revision = "a3c9e5d10b42"
down_revision = "6fb527619322"
branch_labels = None
depends_on = None

OPEN_STAGES = (
    "district",
    "eligibility",
    "supplement",
    "expert",
    "ranking",
    "approval",
    "notice",
    "objection",
)
OPEN = sa.text("stage IN (" + ", ".join(f"'{s}'" for s in OPEN_STAGES) + ")")


def upgrade():
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stage", sa.String(length=20), nullable=False, server_default="draft")
        )
    _backfill()
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.alter_column("stage", server_default=None)
    op.create_index(
        "ix_applications_stage_submitted", "applications", ["stage", "submitted_at", "id"]
    )
    op.create_index(
        "ix_applications_district_stage_submitted",
        "applications",
        ["district", "stage", "submitted_at", "id"],
    )
    op.create_index(
        "ix_applications_open_submitted",
        "applications",
        ["submitted_at", "id"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index(
        "ix_applications_open_district_submitted",
        "applications",
        ["district", "submitted_at", "id"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )


def _backfill():
    """Set each application's stage from its own definition version's states."""
    from workflow.definitions.loader import parse_program

    conn = op.get_bind()
    definitions = conn.execute(
        sa.text("SELECT id, code, version, source_yaml FROM program_definitions")
    ).all()
    for def_id, code, version, source in definitions:
        program = parse_program(source, f"{code} v{version}")
        by_stage: dict[str, list[str]] = {}
        for state in program.states:
            by_stage.setdefault(state.stage, []).append(state.name)
        for stage, states in by_stage.items():
            conn.execute(
                sa.text(
                    "UPDATE applications SET stage = :stage "
                    "WHERE definition_id = :d AND state IN :states"
                ).bindparams(sa.bindparam("states", expanding=True)),
                {"stage": stage, "d": def_id, "states": states},
            )
    # A state its definition does not know (cannot happen through the engine) is history.
    conn.execute(
        sa.text("UPDATE applications SET stage = 'closed' WHERE stage = 'draft' AND state <> 'draft'")
    )


def downgrade():
    op.drop_index("ix_applications_open_district_submitted", table_name="applications")
    op.drop_index("ix_applications_open_submitted", table_name="applications")
    op.drop_index("ix_applications_district_stage_submitted", table_name="applications")
    op.drop_index("ix_applications_stage_submitted", table_name="applications")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("stage")
