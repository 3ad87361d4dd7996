"""Business rules. The API, the worker and the CLI call these; none of them
re-implements a rule."""
