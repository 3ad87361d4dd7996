"""Waitlist entries: one live entry per user and showtime.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 14:05:33.694592

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('waitlist_entries',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('showtime_id', sa.BigInteger(), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), server_default='waiting', nullable=False),
    sa.Column('offer_hold_id', sa.String(length=64), nullable=True),
    sa.Column('offer_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('waiting', 'offered', 'accepted', 'lapsed', 'left')", name=op.f('ck_waitlist_entries_status_known')),
    sa.CheckConstraint('seats BETWEEN 1 AND 50', name=op.f('ck_waitlist_entries_seats_range')),
    sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_waitlist_entries_showtime_id_showtimes'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_waitlist_entries_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries'))
    )
    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.create_index('ix_waitlist_showtime_status_id', ['showtime_id', 'status', 'id'], unique=False)
        batch_op.create_index('uq_waitlist_live', ['user_id', 'showtime_id'], unique=True, postgresql_where=sa.text("status IN ('waiting', 'offered')"))



def downgrade():
    with op.batch_alter_table('waitlist_entries', schema=None) as batch_op:
        batch_op.drop_index('uq_waitlist_live', postgresql_where=sa.text("status IN ('waiting', 'offered')"))
        batch_op.drop_index('ix_waitlist_showtime_status_id')

    op.drop_table('waitlist_entries')
