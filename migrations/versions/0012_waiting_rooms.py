"""A showtime's waiting room for its on-sale: the settings (the queue lives in Redis).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 13:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'waiting_rooms',
        sa.Column('showtime_id', sa.BigInteger(), nullable=False),
        sa.Column('opens_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('admit_per_minute', sa.Integer(), nullable=False),
        sa.Column('max_active', sa.Integer(), nullable=False),
        sa.Column('session_seconds', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('admit_per_minute > 0', name=op.f('ck_waiting_rooms_admit_per_minute_positive')),
        sa.CheckConstraint('max_active > 0', name=op.f('ck_waiting_rooms_max_active_positive')),
        sa.CheckConstraint('session_seconds > 0', name=op.f('ck_waiting_rooms_session_seconds_positive')),
        sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_waiting_rooms_showtime_id_showtimes'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('showtime_id', name=op.f('pk_waiting_rooms')),
    )


def downgrade():
    op.drop_table('waiting_rooms')
