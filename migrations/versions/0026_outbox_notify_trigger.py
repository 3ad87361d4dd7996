"""A trigger on ``outbox`` wakes the relay.

The relay LISTENs on ``marquee_outbox``; until now the ORM's ``after_insert`` event on
``OutboxEvent`` sent ``pg_notify`` for every row it flushed: one more statement and round
trip for each outbox row, and none at all for a row written by a Core statement (the
password reset's CTE sent its own). The notice now comes from PostgreSQL for every row
inserted, whoever wrote it; like any NOTIFY it is delivered only if, and when, the
transaction commits, once (identical notices of a transaction are folded into one). A
row trigger rather than a statement one: an INSERT ... SELECT that inserts nothing (a
password reset for an unknown address) wakes nobody.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-23 11:40:00.000000

"""
from alembic import op


revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("""
        CREATE FUNCTION outbox_wake_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('marquee_outbox', '');
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER outbox_wake_relay AFTER INSERT ON outbox
        FOR EACH ROW EXECUTE FUNCTION outbox_wake_relay()
    """)


def downgrade():
    op.execute("DROP TRIGGER outbox_wake_relay ON outbox")
    op.execute("DROP FUNCTION outbox_wake_relay()")
