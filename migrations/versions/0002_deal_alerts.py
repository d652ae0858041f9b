"""deal alerts: customers who asked to hear about new deals near them

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deal_alerts_km", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "deal_alerts_km")
