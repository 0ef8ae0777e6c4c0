"""The subject convention: build -> parse is the identity; bad tokens are refused by name."""

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruby_natsx.permissions import subject_matches
from ruby_natsx.subjects import (
    API_VERBS,
    ApiSubject,
    AuditSubject,
    CommandSubject,
    DlqSubject,
    HaEventSubject,
    HaLifecycleSubject,
    OutcomeSubject,
    Parsed,
    RuleSubject,
    StateSubject,
    SubjectError,
    Subjects,
    WebhookSubject,
)
from ruby_natsx.topology import topology

token = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
entity_id = st.builds(lambda d, o: f"{d}.{o}", token, token)
parsed: st.SearchStrategy[Parsed] = st.one_of(
    st.builds(StateSubject, entity_id),
    st.builds(HaEventSubject, token),
    st.builds(HaLifecycleSubject, token),
    st.builds(WebhookSubject, token),
    st.builds(OutcomeSubject, token, token, token),
    st.builds(RuleSubject, token, token),
    st.builds(CommandSubject, token, token),
    st.builds(AuditSubject, token, token),
    st.builds(DlqSubject, token, token),
    st.sampled_from([ApiSubject(f, v) for f, verbs in API_VERBS.items() for v in verbs]),
)
# Anything with a character outside the token alphabet: dots, wildcards, spaces, unicode.
bad_token = st.one_of(
    st.just(""),
    st.builds(
        lambda a, bad, b: a + bad + b,
        st.text("ab", max_size=3),
        st.sampled_from([".", "*", ">", " ", "\t", "/", "é", "\n", "$"]),
        st.text("ab", max_size=3),
    ),
)


@given(prefix=token, subject=parsed)
def test_build_then_parse_is_identity(prefix: str, subject: Parsed) -> None:
    subjects = Subjects(prefix)
    built = subjects.build(subject)
    assert built.startswith(prefix + ".")
    assert subjects.parse(built) == subject


@given(bad=bad_token)
def test_invalid_tokens_are_rejected_naming_the_value(bad: str) -> None:
    s = Subjects()
    cases: list[tuple[Callable[[], str], str]] = [
        (lambda: s.ha_event(bad), "event type"),
        (lambda: s.ha_lifecycle(bad), "lifecycle event"),
        (lambda: s.webhook(bad), "webhook id"),
        (lambda: s.command("light", bad), "service"),
        (lambda: s.command(bad, "turn_on"), "domain"),
        (lambda: s.audit(bad, "x"), "service identity"),
        (lambda: s.rule(bad, "fired"), "rule id"),
        (lambda: s.dlq("EVENTS", bad), "consumer"),
    ]
    for build, what in cases:
        with pytest.raises(SubjectError) as err:
            build()
        assert what in str(err.value)
        assert repr(bad) in str(err.value)


@pytest.mark.parametrize(
    ("entity", "named"),
    [
        ("light", "not of the form"),
        ("light.kitchen lamp", "object id 'kitchen lamp'"),
        ("light.a.b", "object id 'a.b'"),
        ("li*ht.kitchen", "domain 'li*ht'"),
        (".kitchen", "domain ''"),
        ("light.", "object id ''"),
    ],
)
def test_invalid_entity_ids_are_rejected_naming_the_part(entity: str, named: str) -> None:
    with pytest.raises(SubjectError) as err:
        Subjects().ha_state(entity)
    assert repr(entity) in str(err.value)
    assert named in str(err.value)


def test_prefix_is_configurable_and_checked() -> None:
    assert Subjects("home2").command("light", "turn_on") == "home2.cmd.ha.light.turn_on"
    assert Subjects().ha_state("light.kitchen") == "ruby.evt.ha.state.light.kitchen"
    with pytest.raises(SubjectError, match=r"subject prefix 'a\.b'"):
        Subjects("a.b")


@pytest.mark.parametrize(
    "subject",
    [
        "other.evt.ha.state.light.kitchen",  # someone else's prefix
        "ruby.evt.ha.state.light",  # too short
        "ruby.evt.ha.state.light.kitchen.extra",  # too long
        "ruby.evt.ha.*.light.kitchen",  # a wildcard is not a concrete subject
        "ruby.nope.x",  # unknown family
        "ruby.cmd.ha..turn_on",  # empty token
        "ruby.evt.api.webhook.a.b",  # a webhook id is one token
        "ruby.api.audit.delete",  # a request nobody answers
    ],
)
def test_parse_refuses_what_does_not_follow_the_convention(subject: str) -> None:
    with pytest.raises(SubjectError, match=repr(subject).replace("*", r"\*").replace(".", r"\.")):
        Subjects().parse(subject)


def test_wildcards_cover_their_concrete_subjects() -> None:
    s = Subjects()
    assert s.events_all == "ruby.evt.>"
    assert s.ha_state("light.x").startswith(s.ha_all[:-1])
    assert s.cmd_outcome("succeeded", "light", "turn_on").startswith(s.outcomes_all[:-1])
    assert s.webhook("garage-door") == "ruby.evt.api.webhook.garage-door"
    assert s.webhook("garage-door").startswith(s.webhooks_all[:-1])
    assert s.command("light", "turn_on").startswith(s.commands_all[:-1])
    assert s.audit("gateway", "command_executed").startswith(s.audit_all[:-1])
    assert s.dlq("EVENTS", "engine").startswith(s.dlq_all[:-1])


def test_requests_are_in_no_stream_and_name_only_known_verbs() -> None:
    s = Subjects()
    assert s.api("audit", "query") == "ruby.api.audit.query"
    streams = topology(s).streams
    for family, verbs in API_VERBS.items():
        for verb in verbs:
            request = s.api(family, verb)
            assert not [
                st.name for st in streams for f in st.subjects if subject_matches(f, request)
            ]
    with pytest.raises(SubjectError, match="'audit' 'purge'"):
        s.api("audit", "purge")
