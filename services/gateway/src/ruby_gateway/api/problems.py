"""Every API error as RFC 9457 problem details (``application/problem+json``).

``type`` is a URN naming the problem (``urn:ruby-core:problem:<slug>``); ``errors`` lists the
offending fields of a request (``{"field": ..., "message": ...}``), never the values sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus

from aiohttp import web

CONTENT_TYPE = "application/problem+json"


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A problem-details response: ``status``, a title from it, ``detail`` for people."""
    body: dict[str, object] = {
        "type": f"urn:ruby-core:problem:{slug}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=CONTENT_TYPE,
        headers=headers,
    )
