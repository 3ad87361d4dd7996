"""Staff multi-factor authentication.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-23 00:20:00.000000

"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
