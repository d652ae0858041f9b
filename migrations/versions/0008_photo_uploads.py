"""photo uploads: photos a business uploads from the Mini App, for the images task

The images task makes an offer's deal card from the photo the offer names in
``photo_source_file_id``: Telegram's file_id for a photo sent in the chat, ``upload:<id>`` for one
of these rows (domain/photos.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "photo_uploads",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("business_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("octet_length(content) BETWEEN 1 AND 20971520", name=op.f("ck_photo_uploads_content_size")),
        sa.ForeignKeyConstraint(["business_id"], ["businesses.id"], name=op.f("fk_photo_uploads_business_id_businesses"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photo_uploads")),
    )
    op.create_index(op.f("ix_photo_uploads_business_id"), "photo_uploads", ["business_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_photo_uploads_business_id"), table_name="photo_uploads")
    op.drop_table("photo_uploads")
