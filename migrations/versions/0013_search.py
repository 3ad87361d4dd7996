"""Search: full-text vectors and trigram indexes over movies, theaters and cities.

Two text-search configurations, both folding accents with the ``unaccent``
dictionary before their own dictionary ("Café" and "cafe" are one lexeme):
``marquee_english`` stems English words (descriptions, genres: "comedies" finds
"Comedy"); ``marquee_names`` keeps words as they are and drops no stop word, for
proper nouns (titles, names, addresses: a film called "It" stays findable).

Each table gets a stored generated ``search_vector`` (GIN) and ``search_name``, its
title or name lower-cased and unaccented, with a trigram GIN index for typos
(``word_similarity``) and word prefixes (``LIKE '%...%'``), and a btree index in
byte order for the prefixes of one or two letters (``LIKE '...%'``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 21:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Words with letters outside ASCII are `word`/`hword`/`hword_part`; `ascii*` need no folding.
FOLDED_TOKENS = "hword, hword_part, word"

VECTORS = {
    'movies': (
        "setweight(to_tsvector('marquee_names'::regconfig, coalesce(title, '')), 'A')"
        " || setweight(to_tsvector('marquee_english'::regconfig, marquee_join(genres)), 'B')"
        " || setweight(to_tsvector('marquee_english'::regconfig, coalesce(description, '')), 'C')"
    ),
    'theaters': (
        "setweight(to_tsvector('marquee_names'::regconfig, coalesce(name, '')), 'A')"
        " || setweight(to_tsvector('marquee_names'::regconfig, coalesce(address, '')), 'B')"
    ),
    'cities': (
        "setweight(to_tsvector('marquee_names'::regconfig, coalesce(name, '')), 'A')"
        " || setweight(to_tsvector('marquee_names'::regconfig, coalesce(country, '')), 'B')"
    ),
}
NAMES = {'movies': 'title', 'theaters': 'name', 'cities': 'name'}


def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    # unaccent() is STABLE (it reads its dictionary by name); these wrappers name the
    # dictionary itself, so they are IMMUTABLE and may feed generated columns and indexes.
    op.execute("""
        CREATE FUNCTION marquee_fold(text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$
    """)
    op.execute("""
        CREATE FUNCTION marquee_join(text[]) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT coalesce(array_to_string($1, ' '), '') $$
    """)
    op.execute("CREATE TEXT SEARCH CONFIGURATION marquee_english (COPY = pg_catalog.english)")
    op.execute(f"ALTER TEXT SEARCH CONFIGURATION marquee_english ALTER MAPPING FOR {FOLDED_TOKENS}"
               " WITH public.unaccent, english_stem")
    op.execute("CREATE TEXT SEARCH CONFIGURATION marquee_names (COPY = pg_catalog.simple)")
    op.execute(f"ALTER TEXT SEARCH CONFIGURATION marquee_names ALTER MAPPING FOR {FOLDED_TOKENS}"
               " WITH public.unaccent, simple")
    for table, vector in VECTORS.items():
        op.execute(f"ALTER TABLE {table}"
                   f" ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({vector}) STORED,"
                   f" ADD COLUMN search_name text GENERATED ALWAYS AS (marquee_fold({NAMES[table]})) STORED")
        # fastupdate off: the catalog is written rarely and searched all the time, and a
        # GIN pending list is read in full by every search (and prices index scans as
        # dear as the table): 9 ms instead of 0.8 ms for a suggestion after 20,000 inserts.
        op.execute(f"CREATE INDEX ix_{table}_search_vector ON {table} USING gin (search_vector)"
                   " WITH (fastupdate = off)")
        op.execute(f"CREATE INDEX ix_{table}_search_name_trgm ON {table} USING gin (search_name gin_trgm_ops)"
                   " WITH (fastupdate = off)")
        # Byte order: serves LIKE 'ab%' for the shortest prefixes, in order.
        op.execute(f'CREATE INDEX ix_{table}_search_name_prefix ON {table} (search_name COLLATE "C")')


def downgrade():
    for table in VECTORS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN search_name, DROP COLUMN search_vector")
    op.execute("DROP TEXT SEARCH CONFIGURATION marquee_names")
    op.execute("DROP TEXT SEARCH CONFIGURATION marquee_english")
    op.execute("DROP FUNCTION marquee_join(text[])")
    op.execute("DROP FUNCTION marquee_fold(text)")
    # unaccent stays: other objects may use it, and it costs nothing.
