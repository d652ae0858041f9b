"""orders that close: "not collected", and when a customer did not come

A paid order nobody collects used to stay open for ever. Now the ``maintenance.close_uncollected_orders``
sweeper (or the business, with "didn't come") closes it as ``not_collected`` and stamps
``no_show_at``, which counts the customer's no-shows over 30 days.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATES = ("held", "paid", "collected", "cancelled", "expired", "refunded")


def _states(states: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_orders_order_status"), "orders", type_="check")
    op.create_check_constraint(op.f("ck_orders_order_status"), "orders", _states((*_STATES, "not_collected")))
    op.add_column("orders", sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_orders_customer_no_show", "orders", ["customer_id", "no_show_at"],
                    postgresql_where=sa.text("no_show_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_orders_customer_no_show", table_name="orders")
    op.drop_column("orders", "no_show_at")
    # A not-collected order was paid and its food is gone: it reads as collected on the old schema.
    op.execute("UPDATE orders SET status = 'collected' WHERE status = 'not_collected'")
    op.drop_constraint(op.f("ck_orders_order_status"), "orders", type_="check")
    op.create_check_constraint(op.f("ck_orders_order_status"), "orders", _states(_STATES))
