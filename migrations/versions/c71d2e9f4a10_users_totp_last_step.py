"""users.totp_last_step: a TOTP code is accepted once, on any host

Revision ID: c71d2e9f4a10
Revises: a3c9e5d10b42
Create Date: 2026-11-21 19:50:00

Replaces the per-process memory of used codes, which let a code accepted on one web host
be replayed on another within its validity.
"""

import sqlalchemy as sa
from alembic import op

revision = "c71d2e9f4a10"
down_revision = "a3c9e5d10b42"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
