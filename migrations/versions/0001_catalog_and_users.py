"""Users and the catalog: cities, theaters, screens, seats, movies, showtimes.



Revision ID: 0001
Revises: 
Create Date: 2026-11-21 12:48:22.305468

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # btree_gist: the showtime exclusion constraint mixes = (bigint) and && (range).
    # pg_trgm: title search with ILIKE '%q%' through a GIN index.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('cities',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('country', sa.String(length=120), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cities')),
    sa.UniqueConstraint('name', 'country', name=op.f('uq_cities_name_country'), postgresql_nulls_not_distinct=True)
    )
    op.create_table('movies',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('genres', postgresql.ARRAY(sa.String(length=40)), server_default='{}', nullable=False),
    sa.Column('language', sa.String(length=40), nullable=True),
    sa.Column('rating', sa.String(length=16), nullable=True),
    sa.Column('release_date', sa.Date(), nullable=True),
    sa.Column('poster_url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('duration_minutes BETWEEN 1 AND 1440', name=op.f('ck_movies_duration_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_movies'))
    )
    with op.batch_alter_table('movies', schema=None) as batch_op:
        batch_op.create_index('ix_movies_genres', ['genres'], unique=False, postgresql_using='gin')
        batch_op.create_index('ix_movies_language_lower', [sa.text('lower(language)')], unique=False)
        batch_op.create_index('ix_movies_title_trgm', ['title'], unique=False, postgresql_using='gin', postgresql_ops={'title': 'gin_trgm_ops'})

    op.create_table('users',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), server_default='user', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('user', 'admin')", name=op.f('ck_users_role_known')),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_users_email_lowercase')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('theaters',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('city_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('(latitude IS NULL) = (longitude IS NULL)', name=op.f('ck_theaters_coordinates_paired')),
    sa.CheckConstraint('latitude BETWEEN -90 AND 90', name=op.f('ck_theaters_latitude_range')),
    sa.CheckConstraint('longitude BETWEEN -180 AND 180', name=op.f('ck_theaters_longitude_range')),
    sa.ForeignKeyConstraint(['city_id'], ['cities.id'], name=op.f('fk_theaters_city_id_cities'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_theaters'))
    )
    with op.batch_alter_table('theaters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_theaters_city_id'), ['city_id'], unique=False)
        batch_op.create_index('ix_theaters_latitude_longitude', ['latitude', 'longitude'], unique=False)

    op.create_table('screens',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('theater_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('layout', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('seat_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['theater_id'], ['theaters.id'], name=op.f('fk_screens_theater_id_theaters'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_screens')),
    sa.UniqueConstraint('theater_id', 'name', name=op.f('uq_screens_theater_id_name'))
    )
    with op.batch_alter_table('screens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_screens_theater_id'), ['theater_id'], unique=False)

    op.create_table('seats',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('screen_id', sa.BigInteger(), nullable=False),
    sa.Column('row_label', sa.String(length=8), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('col_index', sa.Integer(), nullable=False),
    sa.CheckConstraint('number > 0', name=op.f('ck_seats_number_positive')),
    sa.ForeignKeyConstraint(['screen_id'], ['screens.id'], name=op.f('fk_seats_screen_id_screens'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seats')),
    sa.UniqueConstraint('screen_id', 'label', name=op.f('uq_seats_screen_id_label'))
    )
    with op.batch_alter_table('seats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seats_screen_id'), ['screen_id'], unique=False)

    op.create_table('showtimes',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('movie_id', sa.BigInteger(), nullable=False),
    sa.Column('screen_id', sa.BigInteger(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('prices', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f('ck_showtimes_currency_iso')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_showtimes_ends_after_start')),
    sa.ForeignKeyConstraint(['movie_id'], ['movies.id'], name=op.f('fk_showtimes_movie_id_movies'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['screen_id'], ['screens.id'], name=op.f('fk_showtimes_screen_id_screens'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_showtimes'))
    )
    with op.batch_alter_table('showtimes', schema=None) as batch_op:
        batch_op.create_index('ix_showtimes_movie_id_starts_at', ['movie_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_showtimes_screen_id_starts_at', ['screen_id', 'starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_showtimes_starts_at'), ['starts_at'], unique=False)

    # Two showtimes on one screen may not overlap in time, however many admins
    # race: PostgreSQL refuses the second insert (SQLSTATE 23P01).
    op.execute(
        "ALTER TABLE showtimes ADD CONSTRAINT ex_showtimes_no_overlap "
        "EXCLUDE USING gist (screen_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&)"
    )



def downgrade():
    with op.batch_alter_table('showtimes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_showtimes_starts_at'))
        batch_op.drop_index('ix_showtimes_screen_id_starts_at')
        batch_op.drop_index('ix_showtimes_movie_id_starts_at')

    op.drop_table('showtimes')
    with op.batch_alter_table('seats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seats_screen_id'))

    op.drop_table('seats')
    with op.batch_alter_table('screens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_screens_theater_id'))

    op.drop_table('screens')
    with op.batch_alter_table('theaters', schema=None) as batch_op:
        batch_op.drop_index('ix_theaters_latitude_longitude')
        batch_op.drop_index(batch_op.f('ix_theaters_city_id'))

    op.drop_table('theaters')
    op.drop_table('users')
    with op.batch_alter_table('movies', schema=None) as batch_op:
        batch_op.drop_index('ix_movies_title_trgm', postgresql_using='gin', postgresql_ops={'title': 'gin_trgm_ops'})
        batch_op.drop_index('ix_movies_language_lower')
        batch_op.drop_index('ix_movies_genres', postgresql_using='gin')

    op.drop_table('movies')
    op.drop_table('cities')
