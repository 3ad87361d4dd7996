"""Tickets: one a seat of a confirmed reservation, with a signed code.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 13:58:13.582512

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tickets',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('reservation_id', sa.BigInteger(), nullable=False),
    sa.Column('showtime_id', sa.BigInteger(), nullable=False),
    sa.Column('seat_id', sa.BigInteger(), nullable=False),
    sa.Column('seat_label', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=10), server_default='valid', nullable=False),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('valid', 'cancelled')", name=op.f('ck_tickets_status_known')),
    sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], name=op.f('fk_tickets_reservation_id_reservations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['seat_id'], ['seats.id'], name=op.f('fk_tickets_seat_id_seats'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_tickets_showtime_id_showtimes'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('code', name=op.f('uq_tickets_code'))
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('uq_tickets_reservation_seat', ['reservation_id', 'seat_id'], unique=True)



def downgrade():
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('uq_tickets_reservation_seat')

    op.drop_table('tickets')
