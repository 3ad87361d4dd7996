"""Reservations, their seats (one live reservation per seat of a showtime) and the outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 13:14:48.933812

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('aggregate_id', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_aggregate_id'), ['aggregate_id'], unique=False)
        batch_op.create_index('ix_outbox_unpublished', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'))

    op.create_table('reservations',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('showtime_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('total_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('hold_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending_payment', 'confirmed', 'payment_failed', 'expired', 'cancelled')", name=op.f('ck_reservations_status_known')),
    sa.CheckConstraint('total_cents >= 0', name=op.f('ck_reservations_total_not_negative')),
    sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_reservations_showtime_id_showtimes'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_reservations_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservations'))
    )
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.create_index('ix_reservations_pending_expires_at', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'pending_payment'"))
        batch_op.create_index(batch_op.f('ix_reservations_showtime_id'), ['showtime_id'], unique=False)
        batch_op.create_index('ix_reservations_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('reservation_seats',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('reservation_id', sa.BigInteger(), nullable=False),
    sa.Column('showtime_id', sa.BigInteger(), nullable=False),
    sa.Column('seat_id', sa.BigInteger(), nullable=False),
    sa.Column('label', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('price_cents >= 0', name=op.f('ck_reservation_seats_price_not_negative')),
    sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'], name=op.f('fk_reservation_seats_reservation_id_reservations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['seat_id'], ['seats.id'], name=op.f('fk_reservation_seats_seat_id_seats'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_reservation_seats_showtime_id_showtimes'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reservation_seats'))
    )
    with op.batch_alter_table('reservation_seats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reservation_seats_reservation_id'), ['reservation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reservation_seats_seat_id'), ['seat_id'], unique=False)
        batch_op.create_index('uq_reservation_seats_live', ['showtime_id', 'seat_id'], unique=True, postgresql_where=sa.text('released_at IS NULL'))



def downgrade():
    with op.batch_alter_table('reservation_seats', schema=None) as batch_op:
        batch_op.drop_index('uq_reservation_seats_live', postgresql_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_reservation_seats_seat_id'))
        batch_op.drop_index(batch_op.f('ix_reservation_seats_reservation_id'))

    op.drop_table('reservation_seats')
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_reservations_user_id_created_at')
        batch_op.drop_index(batch_op.f('ix_reservations_showtime_id'))
        batch_op.drop_index('ix_reservations_pending_expires_at', postgresql_where=sa.text("status = 'pending_payment'"))

    op.drop_table('reservations')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unpublished', postgresql_where=sa.text('published_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_outbox_aggregate_id'))

    op.drop_table('outbox')
