"""Offline check-in: Ed25519 ticket-signing keys (private halves encrypted at rest),
longer ticket codes, who checked a ticket in.

Tickets issued before keep their HMAC codes (customers hold them in mails and
printed QR codes, so they are not re-signed): the server goes on checking them in,
and scanners offline match them against the check-in list.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-23 00:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'ticket_keys',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('kid', sa.String(length=32), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        # AES-256-GCM of the 32-byte Ed25519 seed under TICKET_KEYS_ENCRYPTION_KEY; NULL once retired
        sa.Column('private_key_encrypted', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
        # the latest showtime end this key signed a ticket for: published in the JWKS until then
        sa.Column('signed_until', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint('octet_length(public_key) = 32', name=op.f('ck_ticket_keys_public_key_size')),
        sa.CheckConstraint('retired_at IS NOT NULL OR private_key_encrypted IS NOT NULL',
                           name=op.f('ck_ticket_keys_current_can_sign')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_keys')),
        sa.UniqueConstraint('kid', name=op.f('uq_ticket_keys_kid')),
    )
    # At most one current (signing) key.
    op.create_index('uq_ticket_keys_current', 'ticket_keys', [sa.text('(retired_at IS NULL)')], unique=True,
                    postgresql_where=sa.text('retired_at IS NULL'))

    op.alter_column('tickets', 'code', type_=sa.String(length=255), existing_type=sa.String(length=128),
                    existing_nullable=False)
    op.add_column('tickets', sa.Column('checked_in_by', sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f('fk_tickets_checked_in_by_users'), 'tickets', 'users', ['checked_in_by'], ['id'],
                          ondelete='SET NULL')
    op.create_index('ix_tickets_showtime_id_id', 'tickets', ['showtime_id', 'id'])


def downgrade():
    op.drop_index('ix_tickets_showtime_id_id', table_name='tickets')
    op.drop_constraint(op.f('fk_tickets_checked_in_by_users'), 'tickets', type_='foreignkey')
    op.drop_column('tickets', 'checked_in_by')
    # Codes longer than 128 (Ed25519 ones) would not fit back: a downgrade refuses while any exist.
    op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM tickets WHERE length(code) > 128) THEN "
               "RAISE EXCEPTION 'tickets with Ed25519 codes exist: cannot downgrade'; END IF; END $$")
    op.alter_column('tickets', 'code', type_=sa.String(length=128), existing_type=sa.String(length=255),
                    existing_nullable=False)
    op.drop_index('uq_ticket_keys_current', table_name='ticket_keys')
    op.drop_table('ticket_keys')
