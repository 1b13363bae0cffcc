"""recommendations and impact reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 21:33:54.477699
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ml_impact_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('change_event_id', sa.BigInteger(), nullable=True),
    sa.Column('change_date', sa.Date(), nullable=False),
    sa.Column('change_type', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('overall_impact', sa.String(length=16), nullable=False),
    sa.Column('metric_changes', sa.JSON(), nullable=False),
    sa.Column('recommendation', sa.Text(), nullable=False),
    sa.Column('counterfactual', sa.String(length=16), nullable=False),
    sa.Column('window_before', sa.Integer(), nullable=False),
    sa.Column('window_after', sa.Integer(), nullable=False),
    sa.Column('analyzed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_impact_reports')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'change_date', 'change_type', 'window_before', 'window_after', name='uq_ml_impact_reports_key')
    )
    op.create_table('ml_recommendations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('recommendation_type', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.String(length=8), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('suggested_action', sa.JSON(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_recommendations'))
    )
    with op.batch_alter_table('ml_recommendations', schema=None) as batch_op:
        batch_op.create_index('ix_ml_recommendations_open', ['account_id', 'entity_type', 'status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ml_recommendations', schema=None) as batch_op:
        batch_op.drop_index('ix_ml_recommendations_open')

    op.drop_table('ml_recommendations')
    op.drop_table('ml_impact_reports')
