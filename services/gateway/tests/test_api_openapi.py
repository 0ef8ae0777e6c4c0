"""The committed OpenAPI document (docs/api/openapi.json) is the one the code serves, and it
documents every route of the table with its scope."""

from __future__ import annotations

import json
from pathlib import Path

from ruby_gateway.api.openapi import document, render
from ruby_gateway.api.routes import ROUTES

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "api" / "openapi.json"


def test_the_committed_document_is_the_served_one() -> None:
    assert COMMITTED.read_text() == render(), "run `make schemas` and commit docs/api/openapi.json"


def test_every_route_is_documented_with_its_scope_and_problems() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    for route in ROUTES:
        operation = doc["paths"][route.full_path][route.method.lower()]
        assert operation["operationId"] == route.name
        assert operation["x-scope"] == route.scope.value
        assert {"401", "403"} <= set(operation["responses"])
    served = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == {(r.method, r.full_path) for r in ROUTES}
    json.dumps(doc)  # JSON all the way down
