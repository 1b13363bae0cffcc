"""at most one OPEN recommendation per (account, level, entity, type), enforced by the schema

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older duplicates (written by two runs at once before this index) are expired, the newest kept.
    op.execute(
        "UPDATE ml_recommendations SET status = 'EXPIRED' WHERE status = 'OPEN' AND id NOT IN ("
        "SELECT max(id) FROM ml_recommendations WHERE status = 'OPEN' "
        "GROUP BY account_id, entity_type, entity_id, recommendation_type)"
    )
    with op.batch_alter_table('ml_recommendations', schema=None) as batch_op:
        batch_op.create_index(
            'uq_ml_recommendations_one_open', ['account_id', 'entity_type', 'entity_id', 'recommendation_type'],
            unique=True, sqlite_where=sa.text("status = 'OPEN'"), postgresql_where=sa.text("status = 'OPEN'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('ml_recommendations', schema=None) as batch_op:
        batch_op.drop_index('uq_ml_recommendations_one_open')
