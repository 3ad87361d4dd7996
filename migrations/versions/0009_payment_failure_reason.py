"""Why a charge was declined (declined, unknown_token...), recorded with the payment.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('payments', sa.Column('failure_reason', sa.String(length=40), nullable=True))


def downgrade():
    op.drop_column('payments', 'failure_reason')
