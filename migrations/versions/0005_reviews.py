"""Reviews, one per user and movie, and the movie's exact rating aggregates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 13:59:49.079729

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reviews',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('movie_id', sa.BigInteger(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('text', sa.String(length=5000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name=op.f('ck_reviews_rating_range')),
    sa.ForeignKeyConstraint(['movie_id'], ['movies.id'], name=op.f('fk_reviews_movie_id_movies'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_reviews_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews'))
    )
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index('ix_reviews_movie_id_updated_at', ['movie_id', 'updated_at'], unique=False)
        batch_op.create_index('uq_reviews_user_movie', ['user_id', 'movie_id'], unique=True)

    with op.batch_alter_table('movies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('average_rating', sa.Numeric(precision=3, scale=2), nullable=True))
        batch_op.add_column(sa.Column('review_count', sa.Integer(), server_default='0', nullable=False))



def downgrade():
    with op.batch_alter_table('movies', schema=None) as batch_op:
        batch_op.drop_column('review_count')
        batch_op.drop_column('average_rating')

    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index('uq_reviews_user_movie')
        batch_op.drop_index('ix_reviews_movie_id_updated_at')

    op.drop_table('reviews')
