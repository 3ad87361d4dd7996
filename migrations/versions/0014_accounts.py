"""Accounts: password-reset tokens (hashes only), when a user was erased, and whose
each email was.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('password_reset_tokens',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_reset_tokens_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_reset_tokens_token_hash'))
    )
    op.create_index('ix_password_reset_tokens_user_id', 'password_reset_tokens', ['user_id'])
    op.add_column('users', sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    # Whose each email was: found for an export or an erasure after an address change.
    op.add_column('emails', sa.Column('user_id', sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f('fk_emails_user_id_users'), 'emails', 'users', ['user_id'], ['id'],
                          ondelete='SET NULL')
    op.create_index(op.f('ix_emails_user_id'), 'emails', ['user_id'])
    op.execute("UPDATE emails SET user_id = users.id FROM users WHERE users.email = emails.to_address")


def downgrade():
    op.drop_index(op.f('ix_emails_user_id'), table_name='emails')
    op.drop_constraint(op.f('fk_emails_user_id_users'), 'emails', type_='foreignkey')
    op.drop_column('emails', 'user_id')
    op.drop_column('users', 'erased_at')
    op.drop_index('ix_password_reset_tokens_user_id', table_name='password_reset_tokens')
    op.drop_table('password_reset_tokens')
