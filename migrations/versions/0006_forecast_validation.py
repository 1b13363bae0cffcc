"""per-entity forecast validation (read back by the forecasts of any later run)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ml_forecast_validation',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('error_metric', sa.String(length=8), nullable=False),
    sa.Column('ensemble_error', sa.Float(), nullable=True),
    sa.Column('baseline_error', sa.Float(), nullable=True),
    sa.Column('beat_baseline', sa.Boolean(), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_forecast_validation')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'metric', name='uq_ml_forecast_validation_key')
    )


def downgrade() -> None:
    op.drop_table('ml_forecast_validation')
