"""Meta sync: entities' effective status, lifetime budgets and Meta's times; partial days; sync state

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _meta_columns(table: str, lifetime: bool) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        if lifetime:
            batch_op.add_column(sa.Column('lifetime_budget', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('effective_status', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('created_time', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_time', sa.DateTime(timezone=True), nullable=True))


def upgrade() -> None:
    _meta_columns('campaigns', True)
    _meta_columns('adsets', True)
    _meta_columns('ads', False)
    with op.batch_alter_table('daily_insights', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partial_as_of', sa.DateTime(timezone=True), nullable=True))
    op.create_table('meta_sync_state',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('discovered', sa.Boolean(), nullable=False),
    sa.Column('account_status', sa.Integer(), nullable=True),
    sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_full_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('synced_through', sa.Date(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_meta_sync_state'))
    )


def downgrade() -> None:
    op.drop_table('meta_sync_state')
    with op.batch_alter_table('daily_insights', schema=None) as batch_op:
        batch_op.drop_column('partial_as_of')
    for table, lifetime in (('ads', False), ('adsets', True), ('campaigns', True)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('updated_time')
            batch_op.drop_column('created_time')
            batch_op.drop_column('effective_status')
            if lifetime:
                batch_op.drop_column('lifetime_budget')
