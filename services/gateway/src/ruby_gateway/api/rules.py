"""The engine's rules as the API shows them: ``GET /rules``, ``/rules/{rule_id}`` and
``/rules/{rule_id}/traces``; and ``POST /rules/check``, which validates a rule file as the
engine would load it, changing nothing (ADR-0020).

Read from what the engine writes in the status bucket, the records ``rubyctl rules status``
and ``trace`` read: ``engine.rules`` (`RulesRecord`) and ``engine.trace.<rule id>``
(`TraceRecord`). The gateway may read those keys and no other of the engine's.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final, TypeVar

from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from ruby_gateway.api.problems import problem
from ruby_natsx.topology import RULES_KEY, TRACES_KEY, BucketSpec
from ruby_rules import load_text
from ruby_rules.loader import MAX_FILE_BYTES
from ruby_schemas.status import RuleRow, RulesRecord, StatusRecordError, read_record
from ruby_schemas.traces import TraceRecord

RULE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
CHECKED_FILE: Final = "body.yaml"
"""The name errors of a checked body carry."""
_M = TypeVar("_M", bound=BaseModel)


class Rules:
    """The three handlers, reading the status bucket directly (no consumer needed)."""

    def __init__(self, nc: Client, status: BucketSpec) -> None:
        self._js = nc.jetstream()
        self._status = status

    async def _read(self, key: str, model: type[_M]) -> _M | None:
        try:
            msg = await self._js.get_msg(
                self._status.stream().name, subject=f"$KV.{self._status.bucket}.{key}", direct=True
            )
        except NotFoundError:
            return None
        if not msg.data:  # deleted
            return None
        return read_record(model, msg.data, key=key)

    async def _rules(self) -> RulesRecord | web.Response | None:
        try:
            return await self._read(RULES_KEY, RulesRecord)
        except StatusRecordError as exc:
            return problem(502, "unreadable-record", str(exc))

    async def list_rules(self, _request: web.Request) -> web.Response:
        rules = await self._rules()
        if isinstance(rules, web.Response):
            return rules
        if rules is None:  # the engine has not written its record (yet)
            return web.json_response({"updated": None, "rules": [], "refused_files": {}})
        return web.json_response(
            {
                "updated": rules.updated.isoformat(),
                "rules": [_row(rule_id, row) for rule_id, row in sorted(rules.rules.items())],
                "refused_files": {f: list(errors) for f, errors in rules.refused_files.items()},
            }
        )

    async def _known(self, request: web.Request) -> tuple[str, RuleRow | web.Response]:
        """The path's rule id and its row, or the problem (400, 404, 502) to answer."""
        rule_id, refused = _rule_id(request)
        if refused is not None:
            return rule_id, refused
        rules = await self._rules()
        if isinstance(rules, web.Response):
            return rule_id, rules
        if rules is None or rule_id not in rules.rules:
            return rule_id, problem(404, "no-such-rule", f"the engine has no rule {rule_id}")
        return rule_id, rules.rules[rule_id]

    async def get_rule(self, request: web.Request) -> web.Response:
        rule_id, row = await self._known(request)
        return row if isinstance(row, web.Response) else web.json_response(_row(rule_id, row))

    async def rule_traces(self, request: web.Request) -> web.Response:
        rule_id, row = await self._known(request)
        if isinstance(row, web.Response):
            return row
        try:
            traces = await self._read(f"{TRACES_KEY}.{rule_id}", TraceRecord)
        except StatusRecordError as exc:
            return problem(502, "unreadable-record", str(exc))
        runs = [] if traces is None else [run.model_dump(mode="json") for run in traces.runs]
        return web.json_response({"rule_id": rule_id, "runs": runs})


async def check(request: web.Request) -> web.Response:
    """The body as one rule file (YAML, in Ruby Core's format or Home Assistant's): the rules
    it defines and every error with its line and column; nothing is loaded or stored."""
    body = await request.read()
    if len(body) > MAX_FILE_BYTES:
        return problem(413, "too-large", f"a rule file has at most {MAX_FILE_BYTES} bytes")
    result = await asyncio.to_thread(load_text, body, CHECKED_FILE)
    return web.json_response(
        {
            "ok": result.ok,
            "rules": [rule.id for rule in result.rules],
            "errors": [
                {"line": e.line, "column": e.column, "message": e.message, "rule_id": e.rule_id}
                for e in result.errors
            ],
        }
    )


def _rule_id(request: web.Request) -> tuple[str, web.Response | None]:
    rule_id = request.match_info["rule_id"]
    if RULE_ID.fullmatch(rule_id):
        return rule_id, None
    return rule_id, problem(
        400,
        "invalid-rule-id",
        "a rule id is 1 to 128 letters, digits, '_' or '-'",
        errors=[{"field": "rule_id", "message": "not a rule id"}],
    )


def _row(rule_id: str, row: BaseModel) -> dict[str, object]:
    return {"id": rule_id, **row.model_dump(mode="json")}
