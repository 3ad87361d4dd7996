"""Notifications: preferences per user and reminders sent once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-22 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'notification_preferences',
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('email', sa.Boolean(), nullable=False),
        sa.Column('sms', sa.Boolean(), nullable=False),
        sa.Column('push', sa.Boolean(), nullable=False),
        sa.Column('reminders', sa.Boolean(), nullable=False),
        sa.Column('reminder_minutes', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=16), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('reminder_minutes BETWEEN 5 AND 10080',
                           name=op.f('ck_notification_preferences_reminder_minutes_range')),
        sa.CheckConstraint('NOT sms OR phone IS NOT NULL', name=op.f('ck_notification_preferences_sms_needs_phone')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notification_preferences')),
    )
    op.create_index('ix_notification_preferences_reminder_minutes', 'notification_preferences', ['reminder_minutes'],
                    postgresql_where=sa.text('reminders'))
    op.create_table(
        'reminders',
        sa.Column('reservation_id', sa.BigInteger(), nullable=False),
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('queued_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('outcome', sa.String(length=12), nullable=True),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('email', 'sms', 'push')", name=op.f('ck_reminders_channel_known')),
        sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], name=op.f('fk_reminders_reservation_id_reservations'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('reservation_id', 'channel', name=op.f('pk_reminders')),
    )


def downgrade():
    op.drop_table('reminders')
    op.drop_table('notification_preferences')
