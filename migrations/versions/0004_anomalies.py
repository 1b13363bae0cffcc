"""anomalies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 21:23:41.641394
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ml_anomalies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('anomaly_date', sa.Date(), nullable=False),
    sa.Column('observed_value', sa.Float(), nullable=False),
    sa.Column('expected_value', sa.Float(), nullable=True),
    sa.Column('deviation_score', sa.Float(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_anomalies')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'metric', 'anomaly_date', name='uq_ml_anomalies_key')
    )
    with op.batch_alter_table('ml_anomalies', schema=None) as batch_op:
        batch_op.create_index('ix_ml_anomalies_account_level_date', ['account_id', 'entity_type', 'anomaly_date'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ml_anomalies', schema=None) as batch_op:
        batch_op.drop_index('ix_ml_anomalies_account_level_date')

    op.drop_table('ml_anomalies')
