"""Price rules and vouchers.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-23 00:20:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'price_rules',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('theater_id', sa.BigInteger(), nullable=True),
        sa.Column('movie_id', sa.BigInteger(), nullable=True),
        sa.Column('showtime_id', sa.BigInteger(), nullable=True),
        sa.Column('category', sa.String(length=32), nullable=True),
        sa.Column('weekdays', postgresql.ARRAY(sa.SmallInteger()), nullable=True),
        sa.Column('local_time_from', sa.Time(), nullable=True),
        sa.Column('local_time_to', sa.Time(), nullable=True),
        sa.Column('days_before_max', sa.Integer(), nullable=True),
        sa.Column('days_before_min', sa.Integer(), nullable=True),
        sa.Column('occupancy_min', sa.SmallInteger(), nullable=True),
        sa.Column('percent', sa.Integer(), nullable=True),
        sa.Column('amount_cents', sa.Integer(), nullable=True),
        sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('(percent IS NULL) <> (amount_cents IS NULL)', name=op.f('ck_price_rules_one_adjustment')),
        sa.CheckConstraint('percent IS NULL OR percent >= -100', name=op.f('ck_price_rules_percent_range')),
        sa.CheckConstraint('occupancy_min IS NULL OR occupancy_min BETWEEN 1 AND 100',
                           name=op.f('ck_price_rules_occupancy_range')),
        sa.ForeignKeyConstraint(['theater_id'], ['theaters.id'], name=op.f('fk_price_rules_theater_id_theaters'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['movie_id'], ['movies.id'], name=op.f('fk_price_rules_movie_id_movies'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_price_rules_showtime_id_showtimes'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_price_rules')),
    )
    op.create_index(op.f('ix_price_rules_theater_id'), 'price_rules', ['theater_id'])
    op.create_index(op.f('ix_price_rules_movie_id'), 'price_rules', ['movie_id'])
    op.create_index(op.f('ix_price_rules_showtime_id'), 'price_rules', ['showtime_id'])

    op.create_table(
        'vouchers',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('percent_off', sa.SmallInteger(), nullable=True),
        sa.Column('amount_off_cents', sa.Integer(), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=True),
        sa.Column('max_uses', sa.Integer(), nullable=True),
        sa.Column('max_uses_per_user', sa.Integer(), nullable=True),
        sa.Column('uses', sa.Integer(), server_default='0', nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=True),
        sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('theater_id', sa.BigInteger(), nullable=True),
        sa.Column('movie_id', sa.BigInteger(), nullable=True),
        sa.Column('showtime_id', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('(percent_off IS NULL) <> (amount_off_cents IS NULL)', name=op.f('ck_vouchers_one_discount')),
        sa.CheckConstraint('uses >= 0', name=op.f('ck_vouchers_uses_positive')),
        sa.CheckConstraint('max_uses IS NULL OR uses <= max_uses', name=op.f('ck_vouchers_uses_within_limit')),
        sa.CheckConstraint('code = lower(code)', name=op.f('ck_vouchers_code_normalized')),
        sa.ForeignKeyConstraint(['theater_id'], ['theaters.id'], name=op.f('fk_vouchers_theater_id_theaters'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['movie_id'], ['movies.id'], name=op.f('fk_vouchers_movie_id_movies'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_vouchers_showtime_id_showtimes'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vouchers')),
        sa.UniqueConstraint('code', name=op.f('uq_vouchers_code')),
    )

    op.create_table(
        'voucher_redemptions',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('voucher_id', sa.BigInteger(), nullable=False),
        sa.Column('reservation_id', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('discount_cents', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('returned_at', sa.DateTime(timezone=True), nullable=True),
        # A voucher in use is not deleted (RESTRICT): its redemptions are money history.
        sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'], name=op.f('fk_voucher_redemptions_voucher_id_vouchers'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['reservation_id'], ['reservations.id'],
                                name=op.f('fk_voucher_redemptions_reservation_id_reservations'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_voucher_redemptions_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voucher_redemptions')),
        sa.UniqueConstraint('reservation_id', name=op.f('uq_voucher_redemptions_reservation_id')),
    )
    op.create_index('ix_voucher_redemptions_voucher_id_user_id', 'voucher_redemptions', ['voucher_id', 'user_id'])


def downgrade():
    op.drop_table('voucher_redemptions')
    op.drop_table('vouchers')
    op.drop_index(op.f('ix_price_rules_showtime_id'), table_name='price_rules')
    op.drop_index(op.f('ix_price_rules_movie_id'), table_name='price_rules')
    op.drop_index(op.f('ix_price_rules_theater_id'), table_name='price_rules')
    op.drop_table('price_rules')
