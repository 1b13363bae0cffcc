"""the ensemble's conformal interval per level and metric (the quantiles of its validation errors)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ml_ensemble_weights') as batch:
        batch.add_column(sa.Column('interval_low', sa.Float(), nullable=True))
        batch.add_column(sa.Column('interval_high', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ml_ensemble_weights') as batch:
        batch.drop_column('interval_high')
        batch.drop_column('interval_low')
