"""forecasting tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 21:04:31.274007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ml_ensemble_weights',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('validation_error', sa.Float(), nullable=True),
    sa.Column('error_metric', sa.String(length=8), nullable=False),
    sa.Column('baseline_error', sa.Float(), nullable=True),
    sa.Column('n_entities', sa.Integer(), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('calibrated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_ensemble_weights')),
    sa.UniqueConstraint('account_id', 'entity_type', 'metric', 'method', name='uq_ml_ensemble_weights_key')
    )
    op.create_table('ml_forecasts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('forecast_date', sa.Date(), nullable=False),
    sa.Column('predicted_value', sa.Float(), nullable=False),
    sa.Column('lower_bound', sa.Float(), nullable=False),
    sa.Column('upper_bound', sa.Float(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('beat_baseline', sa.Boolean(), nullable=True),
    sa.Column('validation_error', sa.Float(), nullable=True),
    sa.Column('baseline_error', sa.Float(), nullable=True),
    sa.Column('error_metric', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_forecasts')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'metric', 'forecast_date', 'method', name='uq_ml_forecasts_key')
    )
    with op.batch_alter_table('ml_forecasts', schema=None) as batch_op:
        batch_op.create_index('ix_ml_forecasts_account_level', ['account_id', 'entity_type'], unique=False)

    op.create_table('ml_prophet_params',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('changepoint_prior_scale', sa.Float(), nullable=False),
    sa.Column('seasonality_prior_scale', sa.Float(), nullable=False),
    sa.Column('cv_error', sa.Float(), nullable=True),
    sa.Column('error_metric', sa.String(length=8), nullable=False),
    sa.Column('cv_metrics', sa.JSON(), nullable=False),
    sa.Column('n_points', sa.Integer(), nullable=False),
    sa.Column('n_folds', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('params_path', sa.Text(), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('tuned_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_prophet_params')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'metric', name='uq_ml_prophet_params_key')
    )


def downgrade() -> None:
    op.drop_table('ml_prophet_params')
    with op.batch_alter_table('ml_forecasts', schema=None) as batch_op:
        batch_op.drop_index('ix_ml_forecasts_account_level')

    op.drop_table('ml_forecasts')
    op.drop_table('ml_ensemble_weights')
