"""Foundations of selling and operating: staff roles scoped to theaters, the
append-only audit log, and the money a reservation shows beyond its total
(discount, refund).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-23 00:15:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('reservations', sa.Column('discount_cents', sa.Integer(), server_default='0', nullable=False))
    op.add_column('reservations', sa.Column('refund_cents', sa.Integer(), nullable=True))

    op.create_table(
        'user_roles',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('theater_id', sa.BigInteger(), nullable=False),
        sa.Column('granted_by', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("role IN ('manager', 'scanner')", name=op.f('ck_user_roles_role_known')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['theater_id'], ['theaters.id'], name=op.f('fk_user_roles_theater_id_theaters'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['granted_by'], ['users.id'], name=op.f('fk_user_roles_granted_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_roles')),
        sa.UniqueConstraint('user_id', 'role', 'theater_id', name=op.f('uq_user_roles_user_id_role_theater_id')),
    )
    op.create_index(op.f('ix_user_roles_theater_id'), 'user_roles', ['theater_id'])

    op.create_table(
        'audit_log',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('actor_id', sa.BigInteger(), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('object_type', sa.String(length=40), nullable=True),
        sa.Column('object_id', sa.String(length=64), nullable=True),
        sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.Column('ip', sa.String(length=64), nullable=True),
        # No foreign key on actor_id: an entry outlives the account it names (erasure).
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'])
    op.create_index('ix_audit_log_actor_id_at', 'audit_log', ['actor_id', 'at'])
    op.create_index('ix_audit_log_action_at', 'audit_log', ['action', 'at'])
    # Append-only, enforced by the database: whoever holds the app's credentials can
    # add entries and read them, never change or remove one.
    op.execute("""
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
    """)
    op.execute("""
        CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
    """)
    op.execute("""
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
    """)


def downgrade():
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_no_update_or_delete ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table('audit_log')
    op.drop_table('user_roles')
    op.drop_column('reservations', 'refund_cents')
    op.drop_column('reservations', 'discount_cents')
