"""Dead letters through the API (admin scope): ``GET /dlq``, ``GET /dlq/{seq}``, ``POST
/dlq/{seq}/replay`` and ``DELETE /dlq/{seq}`` (ADR-0038).

The gateway reads the DLQ by sequence and deletes from it one message at a time, the grants
``StreamAccess.TRIAGE`` gives it; it never purges. It replays a dead letter only to a subject
its own permissions let it publish (the table's, not a list kept here), and only when the
letter comes from the consumer it names: the DLQ subject it is stored on says which service
dead-lettered it (only that one may publish there), and the original subject must be one that
consumer receives. The rest is refused with 409: ``rubyctl dlq replay SEQ`` does it, as the
operator. Replays and deletes are audited by the gateway, with the API token's name (never the
token) in the record's details.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, ValidationError

from ruby_gateway.api.edge import TOKEN_HEADER
from ruby_gateway.api.problems import problem
from ruby_natsx.dlq import DeadLetters, Filter, Stored
from ruby_natsx.errors import TransientError
from ruby_natsx.permissions import permissions_of, subject_matches
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import DlqSubject, SubjectError, Subjects
from ruby_natsx.topology import GATEWAY, topology
from ruby_schemas.errors import ContractError
from ruby_schemas.registry import field_errors

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
MAX_SEQ: Final = 2**63 - 1
SEQ: Final = re.compile(r"[1-9][0-9]{0,18}")
TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
GLOB: Final = re.compile(r"[A-Za-z0-9_.*?>\[\]!-]{1,256}")
DURATION: Final = re.compile(r"([0-9]{1,6})([smhd])")
UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
QUERY: Final = ("stream", "consumer", "subject", "older_than", "newer_than", "after", "limit")
"""The query parameters of ``GET /dlq``: ``rubyctl dlq ls``'s filters, and a page."""


class ReplayBody(BaseModel):
    """The body of ``POST /dlq/{seq}/replay`` (optional); nothing else is accepted."""

    model_config = ConfigDict(extra="forbid")

    keep: bool = False
    """Keep the dead letter in the DLQ after replaying it (``rubyctl dlq replay --keep``)."""


class FieldError(ValueError):
    """A request field is wrong: its name and what it should be (never its value)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message

    def response(self) -> web.Response:
        return problem(
            400,
            "invalid-parameter",
            f"{self.field}: {self.message}",
            errors=[{"field": self.field, "message": self.message}],
        )


class Dlq:
    """The four handlers, as the gateway (``DeadLetters`` with ``actor="gateway"``), publishing
    with the API's one publisher (started and closed by its owner)."""

    def __init__(self, nc: Client, subjects: Subjects, publisher: Publisher) -> None:
        self._subjects = subjects
        self._topology = topology(subjects)
        self._letters = DeadLetters(nc, subjects, actor=GATEWAY, publisher=publisher)
        self._mine = permissions_of(subjects, GATEWAY)

    async def close(self) -> None:
        await self._letters.close()

    async def list_dlq(self, request: web.Request) -> web.Response:
        try:
            where, after, limit = _query(request)
        except FieldError as exc:
            return exc.response()
        page: list[Stored] = []
        more = False
        async for stored in self._letters.list(where, after=after):
            if len(page) == limit:
                more = True
                break
            page.append(stored)
        return web.json_response(
            {
                "dead_letters": [self._shown(stored, payload=False) for stored in page],
                "next_after": page[-1].seq if more else None,
            }
        )

    async def get_dlq(self, request: web.Request) -> web.Response:
        stored = await self._stored(_seq(request))
        if isinstance(stored, web.Response):
            return stored
        return web.json_response(self._shown(stored, payload=True))

    async def replay_dlq(self, request: web.Request) -> web.Response:
        seq = _seq(request)
        if isinstance(seq, web.Response):
            return seq
        try:
            body = ReplayBody.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            errors = [{"field": e.path or "body", "message": e.message} for e in field_errors(exc)]
            return problem(400, "invalid-body", "the request is not a replay", errors=errors)
        stored = await self._stored(seq)
        if isinstance(stored, web.Response):
            return stored
        refused = self._not_replayable(stored)
        if refused is not None:
            return problem(409, *refused)
        try:
            new_seq = await self._letters.replay(
                stored, keep=body.keep, details={"api_token": _token_name(request)}
            )
        except TransientError:
            return problem(503, "unavailable", "NATS did not store the replay; try again")
        return web.json_response(
            {
                "seq": stored.seq,
                "replayed_to": stored.letter.original_subject,
                "stream_sequence": new_seq,
                "kept": body.keep,
            }
        )

    async def delete_dlq(self, request: web.Request) -> web.Response:
        stored = await self._stored(_seq(request))
        if isinstance(stored, web.Response):
            return stored
        try:
            purged = await self._letters.purge(stored, details={"api_token": _token_name(request)})
        except TransientError:
            return problem(503, "unavailable", "deleted, but NATS did not store its audit record")
        if not purged:  # another request deleted it between the read and now
            return _missing(stored.seq)
        return web.Response(status=204)

    async def _stored(self, seq: int | web.Response) -> Stored | web.Response:
        """The dead letter at ``seq``, or the problem (400, 404, 409) to answer."""
        if isinstance(seq, web.Response):
            return seq
        try:
            return await self._letters.get(seq)
        except NotFoundError:
            return _missing(seq)
        except (ContractError, TypeError):  # forged, or not ours: never shown or replayed
            return problem(
                409, "not-a-dead-letter", f"DLQ message {seq} is not a valid dead letter"
            )

    def _not_replayable(self, stored: Stored) -> tuple[str, str] | None:
        """Why the gateway may not replay this letter (slug, detail), or None if it may."""
        letter = stored.letter
        subject = letter.original_subject
        if not self._mine.may_publish(subject):
            return (
                "replay-not-allowed",
                f"the gateway may not publish to {subject}, so the API does not replay it; "
                f"replay it as the operator: rubyctl dlq replay {stored.seq}",
            )
        if not self._from_its_consumer(stored):
            return (
                "unverified-origin",
                f"dead letter {stored.seq} does not come from the consumer it names, or that "
                f"consumer does not receive {subject}; check it with rubyctl dlq show "
                f"{stored.seq}, and replay it as the operator: rubyctl dlq replay {stored.seq}",
            )
        return None

    def _from_its_consumer(self, stored: Stored) -> bool:
        """Stored on its consumer's DLQ subject, which only that consumer's service may publish
        to, and its original subject one that this consumer receives."""
        letter = stored.letter
        try:
            where = self._subjects.parse(stored.subject)
        except SubjectError:
            return False
        if where != DlqSubject(letter.stream, letter.consumer):
            return False
        return any(
            consumer.stream == letter.stream
            and consumer.durable == letter.consumer
            and any(subject_matches(f, letter.original_subject) for f in consumer.filter_subjects)
            for consumer in self._topology.consumers
        )

    def _shown(self, stored: Stored, *, payload: bool) -> dict[str, object]:
        letter = stored.letter
        shown = letter.model_dump(mode="json", exclude=None if payload else {"original_payload"})
        return {
            "seq": stored.seq,
            **shown,
            "correlation_id": stored.envelope.correlation_id,
            "replayable": self._not_replayable(stored) is None,
        }


def _query(request: web.Request) -> tuple[Filter, int, int]:
    """``GET /dlq``'s filter, the sequence it lists after, and how many at most."""
    query = request.query
    for name in query:
        if name not in QUERY:
            raise FieldError(name, f"not a parameter; the parameters are {', '.join(QUERY)}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise FieldError(name, "given more than once")
    for name in ("stream", "consumer"):
        if name in query and not TOKEN.fullmatch(query[name]):
            raise FieldError(name, "1 to 128 letters, digits, '_' or '-'")
    if "subject" in query and not GLOB.fullmatch(query["subject"]):
        raise FieldError("subject", "a glob on the original subject, such as ruby.cmd.ha.light.*")
    return (
        Filter(
            stream=query.get("stream"),
            consumer=query.get("consumer"),
            subject=query.get("subject"),
            older_than=_duration(query, "older_than"),
            newer_than=_duration(query, "newer_than"),
        ),
        _number(query.get("after", "0"), "after", 0, MAX_SEQ),
        _number(query.get("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT),
    )


def _duration(query: Mapping[str, str], name: str) -> timedelta | None:
    raw = query.get(name)
    if raw is None:
        return None
    match = DURATION.fullmatch(raw)
    if match is None:
        raise FieldError(name, "a duration such as 90s, 10m, 2h or 7d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def _number(raw: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise FieldError(name, f"a whole number from {low} to {high}")
    return int(raw)


def _seq(request: web.Request) -> int | web.Response:
    """The path's DLQ sequence, or the 400 naming it."""
    raw = request.match_info["seq"]
    if not SEQ.fullmatch(raw) or int(raw) > MAX_SEQ:
        return FieldError("seq", "a DLQ sequence is a whole number from 1").response()
    return int(raw)


def _missing(seq: int) -> web.Response:
    return problem(404, "no-such-dead-letter", f"the DLQ has no message with sequence {seq}")


def _token_name(request: web.Request) -> str:
    """The name of the API token the edge checked (Traefik sets it from ``/edge/auth``)."""
    return request.headers.get(TOKEN_HEADER, "")
