"""Seats an admin took out of sale for one showtime.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'blocked_seats',
        sa.Column('showtime_id', sa.BigInteger(), nullable=False),
        sa.Column('seat_id', sa.BigInteger(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('blocked_by', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_blocked_seats_showtime_id_showtimes'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['seat_id'], ['seats.id'], name=op.f('fk_blocked_seats_seat_id_seats'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['blocked_by'], ['users.id'], name=op.f('fk_blocked_seats_blocked_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('showtime_id', 'seat_id', name=op.f('pk_blocked_seats')),
    )
    op.create_index('ix_blocked_seats_seat_id', 'blocked_seats', ['seat_id'])


def downgrade():
    op.drop_index('ix_blocked_seats_seat_id', 'blocked_seats')
    op.drop_table('blocked_seats')
