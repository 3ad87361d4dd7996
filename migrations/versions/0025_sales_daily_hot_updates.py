"""A sale's update of its showtime's ``sales_daily`` row is a HOT update.

``ix_sales_daily_day`` carried the summed columns (``INCLUDE (gross_cents, ...,
tickets)``) so that reports could read a range of days from the index alone. But a
sale changes those columns, so no update of the row could be HOT (heap-only): each
wrote a new entry in both indexes and left its old version for VACUUM. In an on-sale
every confirmation of the showtime updates the same row: 10,767 updates, none HOT,
10,767 dead versions for 33 live rows, measured on a stack after a few thousand
checkouts (``sales_theater_daily``, without such an index, 100% HOT). HOT versions
are pruned on their page as it fills, without waiting for VACUUM.

The index keeps ``day`` alone; the reports that read this table (by movie, by
showtime) fetch the rows from the heap instead (``loadtests/bench_reports``, before and
after, in the README). Pages are left 10% free for the updated versions.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-23 09:20:00.000000

"""
from alembic import op


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

COVERED = "(showtime_id, currency, gross_cents, discount_cents, refund_cents, tickets)"


def upgrade():
    op.execute("DROP INDEX ix_sales_daily_day")
    op.execute("CREATE INDEX ix_sales_daily_day ON sales_daily (day)")
    op.execute("ALTER TABLE sales_daily SET (fillfactor = 90)")


def downgrade():
    op.execute("ALTER TABLE sales_daily RESET (fillfactor)")
    op.execute("DROP INDEX ix_sales_daily_day")
    op.execute(f"CREATE INDEX ix_sales_daily_day ON sales_daily (day) INCLUDE {COVERED}")
