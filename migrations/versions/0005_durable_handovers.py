"""durable hand-overs: the tasks a transaction hands over are rows in it

A follow-up task used to be published from an after-commit callback only: a process killed
between the commit and the publish lost it for good (the redelivered update found itself done).
Now `core.handover.enqueue_after_commit` records the task in ``handovers`` in the same
transaction, publishes it after the commit and marks it sent; what stays unsent is published by
the origin's redelivery or by the ``maintenance.resend_handovers`` sweeper, always with the task id
recorded in the row, so that a second publication is a redelivery of the same task.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handovers",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=100), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("eta", sa.DateTime(timezone=True), nullable=True),
        sa.Column("origin", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handovers")),
    )
    op.create_index("ix_handovers_unsent_created", "handovers", ["created_at"],
                    postgresql_where=sa.text("sent_at IS NULL"))
    op.create_index("ix_handovers_unsent_origin", "handovers", ["origin"],
                    postgresql_where=sa.text("sent_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_handovers_unsent_origin", table_name="handovers")
    op.drop_index("ix_handovers_unsent_created", table_name="handovers")
    op.drop_table("handovers")
