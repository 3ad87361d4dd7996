"""Property-based API testing with Schemathesis against the app's own OpenAPI spec.

Every documented operation gets, as an admin over a small catalog, three phases of
requests: the spec's own examples (``examples``: each operation's request example,
with what it leaves out generated), the edges of every schema, valid and invalid
(``coverage``), and generated requests (``fuzzing``). No 5xx, every response
conforms to the spec (status code documented, content type, body schema, headers),
and invalid requests are refused (``negative_data_rejection``). Bounded by
SCHEMATHESIS_MAX_EXAMPLES (default 30 per operation) so CI stays quick.
"""
import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.web import create_app

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


# Built at import (conftest has already pointed the settings at the test database
# and key prefix). schemathesis.pytest.from_fixture would be the lazy way, but it
# relies on a pytest internal that pytest 9 removed.
PHASES = ["examples", "coverage", "fuzzing"]


def _config() -> SchemathesisConfig:
    config = SchemathesisConfig.from_path(Path(__file__).resolve().parents[2] / "schemathesis.toml")
    phases = config.projects.default.phases
    phases.update(phases=PHASES)
    phases.examples.fill_missing = True  # an example of the body only: path ids and the rest generated
    return config


schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(), config=_config())


def test_the_run_includes_the_specs_examples():
    phases = schema.config.phases_for(operation=None)
    assert [name for name in PHASES if phases.get_by_name(name=name).enabled] == PHASES


@pytest.fixture
def seeded(api, admin):
    """A catalog to hit (ids 1 exist) and an admin token to act with."""
    api.catalog(admin)
    return admin


@pytest.mark.slow
@schema.exclude(path_regex="^/api/v1/auth/logout$").parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case, seeded):
    # A negative case may have dropped the Authorization header on purpose: leave it out then.
    dropped_auth = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER) \
        and "Authorization" not in (case.headers or {})
    headers = {} if dropped_auth else {"Authorization": f"Bearer {seeded}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
