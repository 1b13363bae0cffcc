"""ml_classifications

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 20:54:32.455680
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ml_classifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('tier', sa.String(length=32), nullable=False),
    sa.Column('confidence_score', sa.Float(), nullable=True),
    sa.Column('previous_tier', sa.String(length=32), nullable=True),
    sa.Column('tier_change_direction', sa.String(length=16), nullable=True),
    sa.Column('feature_importances', sa.JSON(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('is_transfer', sa.Boolean(), nullable=False),
    sa.Column('rule_tier', sa.String(length=32), nullable=True),
    sa.Column('model_version', sa.Integer(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('classified_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_classifications')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'reference_date', name='uq_ml_classifications_key')
    )
    with op.batch_alter_table('ml_classifications', schema=None) as batch_op:
        batch_op.create_index('ix_ml_classifications_account_level_date', ['account_id', 'entity_type', 'reference_date'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ml_classifications', schema=None) as batch_op:
        batch_op.drop_index('ix_ml_classifications_account_level_date')

    op.drop_table('ml_classifications')
