"""Staff multi-factor authentication: a TOTP secret per user (sealed), its replay
guard, and single-use recovery codes (hashed).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-23 00:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'user_mfa',
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        # AES-256-GCM (nonce + ciphertext) of the base32 secret under MFA_ENCRYPTION_KEY
        sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('enabled_at', sa.DateTime(timezone=True), nullable=True),  # NULL: set up, not confirmed
        # the last TOTP time step accepted: a code of that step or an earlier one is a replay
        sa.Column('last_step', sa.BigInteger(), server_default='-1', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_mfa_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_user_mfa')),
    )
    op.create_table(
        'mfa_recovery_codes',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),  # SHA-256 of the normalized code
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_mfa_recovery_codes_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_recovery_codes')),
        sa.UniqueConstraint('user_id', 'code_hash', name=op.f('uq_mfa_recovery_codes_user_id_code_hash')),
    )


def downgrade():
    op.drop_table('mfa_recovery_codes')
    op.drop_table('user_mfa')
