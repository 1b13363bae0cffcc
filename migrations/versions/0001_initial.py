"""source schema and ML metadata tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 20:28:55.720465
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ad_accounts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_accounts'))
    )
    op.create_table('ml_features',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('parent_id', sa.String(length=64), nullable=True),
    sa.Column('reference_date', sa.Date(), nullable=False),
    sa.Column('features', sa.JSON(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_features')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', name='uq_ml_features_key')
    )
    op.create_table('ml_trained_models',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('model_type', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('feature_columns', sa.JSON(), nullable=False),
    sa.Column('training_metrics', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_trained_models')),
    sa.UniqueConstraint('account_id', 'name', 'entity_type', 'entity_id', 'version', name='uq_ml_trained_models_key')
    )
    with op.batch_alter_table('ml_trained_models', schema=None) as batch_op:
        batch_op.create_index('ix_ml_trained_models_lookup', ['account_id', 'name', 'entity_type', 'entity_id', 'status'], unique=False)

    op.create_table('campaigns',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('daily_budget', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ad_accounts.id'], name=op.f('fk_campaigns_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'id', name=op.f('pk_campaigns'))
    )
    op.create_table('change_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('change_date', sa.Date(), nullable=False),
    sa.Column('change_type', sa.String(length=32), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ad_accounts.id'], name=op.f('fk_change_events_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_events')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'change_date', 'change_type', name='uq_change_events_key')
    )
    with op.batch_alter_table('change_events', schema=None) as batch_op:
        batch_op.create_index('ix_change_events_account_date', ['account_id', 'change_date'], unique=False)

    op.create_table('daily_insights',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('impressions', sa.BigInteger(), nullable=False),
    sa.Column('reach', sa.BigInteger(), nullable=True),
    sa.Column('clicks', sa.BigInteger(), nullable=False),
    sa.Column('spend', sa.Float(), nullable=False),
    sa.Column('leads', sa.BigInteger(), nullable=False),
    sa.Column('conversions', sa.BigInteger(), nullable=False),
    sa.Column('frequency', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("entity_type IN ('campaign', 'adset', 'ad')", name=op.f('ck_daily_insights_entity_type')),
    sa.ForeignKeyConstraint(['account_id'], ['ad_accounts.id'], name=op.f('fk_daily_insights_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_insights')),
    sa.UniqueConstraint('account_id', 'entity_type', 'entity_id', 'date', name='uq_daily_insights_key')
    )
    with op.batch_alter_table('daily_insights', schema=None) as batch_op:
        batch_op.create_index('ix_daily_insights_account_type_date', ['account_id', 'entity_type', 'date'], unique=False)
        batch_op.create_index('ix_daily_insights_updated_at', ['updated_at'], unique=False)

    op.create_table('tier_feedback',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=32), nullable=False),
    sa.Column('feedback_date', sa.Date(), nullable=True),
    sa.Column('created_by', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ad_accounts.id'], name=op.f('fk_tier_feedback_account_id_ad_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_feedback'))
    )
    with op.batch_alter_table('tier_feedback', schema=None) as batch_op:
        batch_op.create_index('ix_tier_feedback_entity', ['account_id', 'entity_type', 'entity_id'], unique=False)

    op.create_table('adsets',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('daily_budget', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id', 'campaign_id'], ['campaigns.account_id', 'campaigns.id'], name=op.f('fk_adsets_account_id_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'id', name=op.f('pk_adsets'))
    )
    with op.batch_alter_table('adsets', schema=None) as batch_op:
        batch_op.create_index('ix_adsets_account_campaign', ['account_id', 'campaign_id'], unique=False)

    op.create_table('ads',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('adset_id', sa.String(length=64), nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id', 'adset_id'], ['adsets.account_id', 'adsets.id'], name=op.f('fk_ads_account_id_adset_id_adsets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'id', name=op.f('pk_ads'))
    )
    with op.batch_alter_table('ads', schema=None) as batch_op:
        batch_op.create_index('ix_ads_account_adset', ['account_id', 'adset_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ads', schema=None) as batch_op:
        batch_op.drop_index('ix_ads_account_adset')

    op.drop_table('ads')
    with op.batch_alter_table('adsets', schema=None) as batch_op:
        batch_op.drop_index('ix_adsets_account_campaign')

    op.drop_table('adsets')
    with op.batch_alter_table('tier_feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_tier_feedback_entity')

    op.drop_table('tier_feedback')
    with op.batch_alter_table('daily_insights', schema=None) as batch_op:
        batch_op.drop_index('ix_daily_insights_updated_at')
        batch_op.drop_index('ix_daily_insights_account_type_date')

    op.drop_table('daily_insights')
    with op.batch_alter_table('change_events', schema=None) as batch_op:
        batch_op.drop_index('ix_change_events_account_date')

    op.drop_table('change_events')
    op.drop_table('campaigns')
    with op.batch_alter_table('ml_trained_models', schema=None) as batch_op:
        batch_op.drop_index('ix_ml_trained_models_lookup')

    op.drop_table('ml_trained_models')
    op.drop_table('ml_features')
    op.drop_table('ad_accounts')
