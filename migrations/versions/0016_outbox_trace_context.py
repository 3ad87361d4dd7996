"""Outbox rows carry the trace context of the request that wrote them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-22 22:40:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    # W3C headers ({"traceparent": ..., "tracestate": ...}); NULL when tracing was off
    op.add_column('outbox', sa.Column('trace_context', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade():
    op.drop_column('outbox', 'trace_context')
