"""A showtime's orphan-seat rule: prevent (default) or allow.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('showtimes', sa.Column('orphan_seats', sa.String(length=8), nullable=False,
                                         server_default='prevent'))
    op.create_check_constraint('orphan_seats_known', 'showtimes', "orphan_seats IN ('prevent', 'allow')")


def downgrade():
    op.drop_constraint('ck_showtimes_orphan_seats_known', 'showtimes', type_='check')
    op.drop_column('showtimes', 'orphan_seats')
