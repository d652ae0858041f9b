"""orders that close, and businesses that get paid (Stripe Connect)

A paid order nobody collects used to stay open for ever. Now the ``maintenance.close_uncollected_orders``
sweeper (or the business, with "didn't come") closes it as ``not_collected`` and stamps
``no_show_at``, which counts the customer's no-shows over 30 days.

Every payment used to land in the platform's account. Now a business has a Stripe Connect account
(``businesses.stripe_account_id`` and what its events said), each order keeps the fee and the
account its Checkout Session sent money to, the ledger has the money's way there: ``fee``,
``transfer``, ``reversal`` and ``fee_refund`` rows, and ``payouts`` keeps what Stripe paid out.

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
_KINDS = ("hold", "release", "sale", "restock", "payment", "refund")
_NEW_KINDS = ("fee", "transfer", "reversal", "fee_refund")


def _states(states: tuple[str, ...], column: str = "status") -> str:
    return f"{column} IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_orders_order_status"), "orders", type_="check")
    op.create_check_constraint(op.f("ck_orders_order_status"), "orders", _states((*_STATES, "not_collected")))
    op.add_column("orders", sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_orders_customer_no_show", "orders", ["customer_id", "no_show_at"],
                    postgresql_where=sa.text("no_show_at IS NOT NULL"))
    op.add_column("orders", sa.Column("fee_minor", sa.Integer(), nullable=True))
    op.add_column("orders", sa.Column("destination_account", sa.String(length=255), nullable=True))

    op.add_column("businesses", sa.Column("stripe_account_id", sa.String(length=255), nullable=True))
    op.create_unique_constraint(op.f("uq_businesses_stripe_account_id"), "businesses", ["stripe_account_id"])
    op.add_column("businesses", sa.Column(
        "payouts_status",
        sa.Enum("none", "pending", "active", "restricted", "disconnected", name="payouts_status", native_enum=False,
                create_constraint=True, length=24),
        server_default="none", nullable=False))
    op.add_column("businesses", sa.Column("charges_enabled", sa.Boolean(), server_default=sa.text("false"),
                                          nullable=False))
    op.add_column("businesses", sa.Column("payouts_enabled", sa.Boolean(), server_default=sa.text("false"),
                                          nullable=False))
    op.add_column("businesses", sa.Column("payouts_event_at", sa.DateTime(timezone=True), nullable=True))

    op.drop_constraint(op.f("ck_ledger_entries_ledger_kind"), "ledger_entries", type_="check")
    op.create_check_constraint(op.f("ck_ledger_entries_ledger_kind"), "ledger_entries",
                               _states((*_KINDS, *_NEW_KINDS), "kind"))

    op.create_table(
        "payouts",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("business_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("arrival_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"], name=op.f("fk_payouts_business_id_businesses")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
    )
    op.create_index(op.f("ix_payouts_business_id"), "payouts", ["business_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_payouts_business_id"), table_name="payouts")
    op.drop_table("payouts")
    op.execute("DELETE FROM ledger_entries WHERE " + _states(_NEW_KINDS, "kind"))
    op.drop_constraint(op.f("ck_ledger_entries_ledger_kind"), "ledger_entries", type_="check")
    op.create_check_constraint(op.f("ck_ledger_entries_ledger_kind"), "ledger_entries", _states(_KINDS, "kind"))
    for column in ("payouts_event_at", "payouts_enabled", "charges_enabled", "payouts_status"):
        op.drop_column("businesses", column)
    op.drop_constraint(op.f("uq_businesses_stripe_account_id"), "businesses", type_="unique")
    op.drop_column("businesses", "stripe_account_id")
    op.drop_column("orders", "destination_account")
    op.drop_column("orders", "fee_minor")
    op.drop_index("ix_orders_customer_no_show", table_name="orders")
    op.drop_column("orders", "no_show_at")
    # A not-collected order was paid and its food is gone: it reads as collected on the old schema.
    op.execute("UPDATE orders SET status = 'collected' WHERE status = 'not_collected'")
    op.drop_constraint(op.f("ck_orders_order_status"), "orders", type_="check")
    op.create_check_constraint(op.f("ck_orders_order_status"), "orders", _states(_STATES))
