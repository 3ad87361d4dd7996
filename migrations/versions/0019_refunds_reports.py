"""Refund policies per theater, and the daily sales summary the reports read.

``theaters.refund_policy`` (JSONB, null = the site-wide cancellation cut-off and a
full refund): ``{cutoff_minutes, fee_percent?, fee_cents?}``.

``sales_daily`` holds, per showtime, local day (the theater's city time zone) and
currency: the successful charges (gross), the discounts of the reservations charged,
the successful refunds, and the net change of live tickets. Triggers keep it in the
transaction of the write that changes it, so it always equals the sums of
``payments`` (and of confirmed reservations' seats). ``sales_theater_daily`` is the
same by theater, kept by the same trigger function. The reports read them with one
aggregate: by movie and showtime from the first, by day, week, month and theater from
the second (a year of 20 theaters: 7,300 rows). The backfills at the end build both
from what is already there.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-23 00:20:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


# The local day of an instant for a showtime: its theater's city time zone.
LOCAL_DAY = """
CREATE FUNCTION sales_local_day(p_showtime_id bigint, p_at timestamptz) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (p_at AT TIME ZONE c.timezone)::date
      FROM showtimes st
      JOIN screens sc ON sc.id = st.screen_id
      JOIN theaters t ON t.id = sc.theater_id
      JOIN cities c ON c.id = t.city_id
     WHERE st.id = p_showtime_id
$$;
"""

ADD = """
CREATE FUNCTION sales_daily_add(p_showtime_id bigint, p_day date, p_currency varchar, p_gross bigint,
                                p_discount bigint, p_refund bigint, p_tickets integer, p_charges integer,
                                p_refunds integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO sales_daily AS s (showtime_id, day, currency, gross_cents, discount_cents, refund_cents,
                                  tickets, charges, refunds)
    VALUES (p_showtime_id, p_day, p_currency, p_gross, p_discount, p_refund, p_tickets, p_charges, p_refunds)
    ON CONFLICT (showtime_id, day, currency) DO UPDATE SET
        gross_cents = s.gross_cents + EXCLUDED.gross_cents,
        discount_cents = s.discount_cents + EXCLUDED.discount_cents,
        refund_cents = s.refund_cents + EXCLUDED.refund_cents,
        tickets = s.tickets + EXCLUDED.tickets,
        charges = s.charges + EXCLUDED.charges,
        refunds = s.refunds + EXCLUDED.refunds;
    INSERT INTO sales_theater_daily AS s (theater_id, day, currency, gross_cents, discount_cents, refund_cents,
                                          tickets)
    SELECT sc.theater_id, p_day, p_currency, p_gross, p_discount, p_refund, p_tickets
      FROM showtimes st JOIN screens sc ON sc.id = st.screen_id WHERE st.id = p_showtime_id
    ON CONFLICT (theater_id, day, currency) DO UPDATE SET
        gross_cents = s.gross_cents + EXCLUDED.gross_cents,
        discount_cents = s.discount_cents + EXCLUDED.discount_cents,
        refund_cents = s.refund_cents + EXCLUDED.refund_cents,
        tickets = s.tickets + EXCLUDED.tickets;
$$;
"""

# A successful charge adds to gross (and the reservation's discount); a successful
# refund to refunds. ``record_payment`` inserts with ON CONFLICT DO NOTHING: a
# redelivered payment inserts no row and fires nothing.
ON_PAYMENT = """
CREATE FUNCTION sales_daily_on_payment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT showtime_id, discount_cents INTO r FROM reservations WHERE id = NEW.reservation_id;
    IF NEW.kind = 'charge' THEN
        PERFORM sales_daily_add(r.showtime_id, sales_local_day(r.showtime_id, NEW.created_at), NEW.currency,
                                NEW.amount_cents, r.discount_cents, 0, 0, 1, 0);
    ELSIF NEW.kind = 'refund' THEN
        PERFORM sales_daily_add(r.showtime_id, sales_local_day(r.showtime_id, NEW.created_at), NEW.currency,
                                0, 0, NEW.amount_cents, 0, 0, 1);
    END IF;
    RETURN NULL;
END $$;
"""

# Live tickets: a reservation's seats count from its confirmation, and stop
# counting when it leaves ``confirmed`` (cancelled), on the day each happens.
ON_RESERVATION = """
CREATE FUNCTION sales_daily_on_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n FROM reservation_seats WHERE reservation_id = NEW.id;
    IF NEW.status = 'confirmed' THEN
        PERFORM sales_daily_add(NEW.showtime_id,
                                sales_local_day(NEW.showtime_id, coalesce(NEW.confirmed_at, now())),
                                NEW.currency, 0, 0, 0, n, 0, 0);
    ELSIF OLD.status = 'confirmed' THEN
        PERFORM sales_daily_add(NEW.showtime_id,
                                sales_local_day(NEW.showtime_id, coalesce(NEW.cancelled_at, now())),
                                NEW.currency, 0, 0, 0, -n, 0, 0);
    END IF;
    RETURN NULL;
END $$;
"""

BACKFILL = """
INSERT INTO sales_daily (showtime_id, day, currency, gross_cents, discount_cents, refund_cents, tickets,
                         charges, refunds)
SELECT facts.showtime_id, (facts.at AT TIME ZONE c.timezone)::date, facts.currency, sum(gross), sum(discount),
       sum(refund), sum(tickets), sum(charges), sum(refunds)
  FROM (
    SELECT r.showtime_id, p.created_at AS at, p.currency,
           CASE WHEN p.kind = 'charge' THEN p.amount_cents ELSE 0 END AS gross,
           CASE WHEN p.kind = 'charge' THEN r.discount_cents ELSE 0 END AS discount,
           CASE WHEN p.kind = 'refund' THEN p.amount_cents ELSE 0 END AS refund,
           0 AS tickets,
           CASE WHEN p.kind = 'charge' THEN 1 ELSE 0 END AS charges,
           CASE WHEN p.kind = 'refund' THEN 1 ELSE 0 END AS refunds
      FROM payments p JOIN reservations r ON r.id = p.reservation_id
     WHERE p.status = 'succeeded' AND p.kind IN ('charge', 'refund')
    UNION ALL
    SELECT r.showtime_id, coalesce(r.confirmed_at, r.created_at), r.currency, 0, 0, 0, count(rs.id), 0, 0
      FROM reservations r JOIN reservation_seats rs ON rs.reservation_id = r.id
     WHERE r.status = 'confirmed'
     GROUP BY r.id
  ) AS facts
  JOIN showtimes st ON st.id = facts.showtime_id
  JOIN screens sc ON sc.id = st.screen_id
  JOIN theaters t ON t.id = sc.theater_id
  JOIN cities c ON c.id = t.city_id
 GROUP BY facts.showtime_id, (facts.at AT TIME ZONE c.timezone)::date, facts.currency;
"""

BACKFILL_THEATERS = """
INSERT INTO sales_theater_daily (theater_id, day, currency, gross_cents, discount_cents, refund_cents, tickets)
SELECT sc.theater_id, s.day, s.currency, sum(s.gross_cents), sum(s.discount_cents), sum(s.refund_cents),
       sum(s.tickets)
  FROM sales_daily s JOIN showtimes st ON st.id = s.showtime_id JOIN screens sc ON sc.id = st.screen_id
 GROUP BY sc.theater_id, s.day, s.currency;
"""


def upgrade():
    op.add_column('theaters', sa.Column('refund_policy', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    # The service validates; the database refuses what would make a refund wrong anyway.
    op.create_check_constraint('refund_policy_valid', 'theaters', """
        refund_policy IS NULL OR (
            jsonb_typeof(refund_policy -> 'cutoff_minutes') = 'number'
            AND (refund_policy ->> 'cutoff_minutes')::numeric >= 0
            AND coalesce((refund_policy ->> 'fee_percent')::numeric, 0) BETWEEN 0 AND 100
            AND coalesce((refund_policy ->> 'fee_cents')::numeric, 0) >= 0)
    """)

    op.create_table(
        'sales_daily',
        sa.Column('showtime_id', sa.BigInteger(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('gross_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('discount_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('refund_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('tickets', sa.Integer(), server_default='0', nullable=False),
        sa.Column('charges', sa.Integer(), server_default='0', nullable=False),
        sa.Column('refunds', sa.Integer(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['showtime_id'], ['showtimes.id'], name=op.f('fk_sales_daily_showtime_id_showtimes'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('showtime_id', 'day', 'currency', name=op.f('pk_sales_daily')),
    )
    # Reports select a range of days: the index covers what they sum, so a year is an index-only scan.
    op.execute("CREATE INDEX ix_sales_daily_day ON sales_daily (day) INCLUDE "
               "(showtime_id, currency, gross_cents, discount_cents, refund_cents, tickets)")

    # The same by theater and day (a year of 20 theaters: 7,300 rows): what the reports
    # by day, week, month and theater read. Its rows are hotter (every sale of a theater
    # on a day adds to one), held only to the commit of the payment's short transaction.
    op.create_table(
        'sales_theater_daily',
        sa.Column('theater_id', sa.BigInteger(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('gross_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('discount_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('refund_cents', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('tickets', sa.Integer(), server_default='0', nullable=False),
        sa.ForeignKeyConstraint(['theater_id'], ['theaters.id'],
                                name=op.f('fk_sales_theater_daily_theater_id_theaters'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('theater_id', 'day', 'currency', name=op.f('pk_sales_theater_daily')),
    )
    op.create_index('ix_sales_theater_daily_day', 'sales_theater_daily', ['day'])

    op.execute(LOCAL_DAY)
    op.execute(ADD)
    op.execute(ON_PAYMENT)
    op.execute(ON_RESERVATION)
    op.execute("""
        CREATE TRIGGER sales_daily_payment AFTER INSERT ON payments
            FOR EACH ROW WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION sales_daily_on_payment();
    """)
    op.execute("""
        CREATE TRIGGER sales_daily_reservation AFTER UPDATE OF status ON reservations
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                               AND (OLD.status = 'confirmed' OR NEW.status = 'confirmed'))
            EXECUTE FUNCTION sales_daily_on_reservation();
    """)
    op.execute(BACKFILL)
    op.execute(BACKFILL_THEATERS)


def downgrade():
    op.execute("DROP TRIGGER IF EXISTS sales_daily_reservation ON reservations")
    op.execute("DROP TRIGGER IF EXISTS sales_daily_payment ON payments")
    op.execute("DROP FUNCTION IF EXISTS sales_daily_on_reservation()")
    op.execute("DROP FUNCTION IF EXISTS sales_daily_on_payment()")
    op.execute("DROP FUNCTION IF EXISTS sales_daily_add(bigint, date, varchar, bigint, bigint, bigint, integer, "
               "integer, integer)")
    op.execute("DROP FUNCTION IF EXISTS sales_local_day(bigint, timestamptz)")
    op.drop_table('sales_theater_daily')
    op.drop_table('sales_daily')
    op.drop_constraint('refund_policy_valid', 'theaters', type_='check')
    op.drop_column('theaters', 'refund_policy')
