"""Adapters to the outside: Redis (keys, cache, limits, tokens), password hashing."""
