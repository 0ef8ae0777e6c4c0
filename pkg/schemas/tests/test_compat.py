"""The compatibility policy holds for every released type, and its checker catches breaks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, Field, StringConstraints, create_model

from ruby_schemas import REGISTRY, Contract, Payload, Registry, decode
from ruby_schemas.compat import incompatibilities, load_baseline, main, make_baseline, release
from ruby_schemas.export import message_schema
from ruby_schemas.primitives import (
    HeaderValue,
    Id,
    MessageId,
    NatsHeaders,
    NonEmptyStr,
)

COMPAT_DIR = Path(__file__).resolve().parents[1] / "compat"
BASELINES = sorted(COMPAT_DIR.glob("*.json"))


# --- the released baselines -------------------------------------------------------------------


def test_every_registered_type_is_released() -> None:
    released = {path.stem for path in BASELINES}
    missing = [t for t in REGISTRY if t not in released]
    assert not missing, (
        "registered types without a baseline; once the type is final, run "
        f"`python -m ruby_schemas.compat release pkg/schemas/compat {' '.join(missing)}`"
    )


@pytest.mark.parametrize("path", BASELINES, ids=[path.stem for path in BASELINES])
def test_current_model_is_compatible_with_its_baseline(path: Path) -> None:
    baseline = load_baseline(path)
    assert baseline.message_type == path.stem
    assert baseline.message_type in REGISTRY, (
        f"{baseline.message_type} was released but is no longer registered; keep it registered "
        "until no producer sends it, then delete its baseline too (ADR 0027)"
    )
    problems = incompatibilities(baseline.schema, message_schema(baseline.message_type))
    assert not problems, (
        f"{baseline.message_type} changed incompatibly; add a new type version instead "
        "(docs/adr/0027-contract-compatibility-policy.md):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("path", BASELINES, ids=[path.stem for path in BASELINES])
def test_baseline_example_still_decodes(path: Path) -> None:
    baseline = load_baseline(path)
    envelope = decode(json.dumps(baseline.example))
    assert envelope.type == baseline.message_type


def test_a_real_break_of_a_released_type_is_caught() -> None:
    baseline = make_baseline("ha.state_changed.v1")
    as_released = copy.deepcopy(baseline.schema)
    model = as_released["$defs"]["StateChangedV1"]
    model["properties"]["retired_field"] = {"type": "string"}
    model["required"].append("retired_field")
    state = as_released["$defs"]["EntityState"]
    state["properties"]["state"] = {"type": "integer"}

    assert incompatibilities(as_released, message_schema("ha.state_changed.v1")) == [
        "data.old_state.state: type changed (type: 'integer' -> 'string')",
        "data.new_state.state: type changed (type: 'integer' -> 'string')",
        "data.retired_field: field removed",
    ]


# --- the checker itself -------------------------------------------------------------------------


class Address(Contract):
    """Nested model, as released."""

    city: str
    street: str | None = None


class PersonV1(Payload):
    """The released shape the variants below are compared with."""

    TYPE: ClassVar[str] = "test.person.v1"
    name: NonEmptyStr
    nickname: str | None = None
    address: Address
    tags: list[str] = Field(default_factory=list)
    mood: Literal["happy", "sad"] = "happy"


def _schema(payload_class: type[Payload]) -> dict[str, Any]:
    return message_schema("test.person.v1", Registry([payload_class]))


def _changes(**overrides: Any) -> list[str]:
    """Compare PersonV1 with a variant whose fields are replaced by `overrides`.

    Each override is an annotation (a required field), `(annotation, default)`, or `None` to drop
    the field.
    """
    return incompatibilities(_schema(PersonV1), _schema(_variant(**overrides)))


def _variant(**overrides: Any) -> type[Payload]:
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in PersonV1.model_fields.items()
    }
    for name, spec in overrides.items():
        if spec is None:
            del fields[name]
        else:
            fields[name] = spec if isinstance(spec, tuple) else (spec, ...)
    variant = create_model("PersonVariant", __base__=Payload, **fields)
    variant.TYPE = PersonV1.TYPE
    return variant


def test_identical_schemas_are_compatible() -> None:
    assert _changes() == []


def test_added_optional_field_is_compatible() -> None:
    assert _changes(email=(str | None, None)) == []


def test_added_optional_nested_field_is_compatible() -> None:
    class AddressV1b(Contract):
        city: str
        street: str | None = None
        postcode: str | None = None

    assert _changes(address=AddressV1b) == []


def test_documentation_changes_are_compatible() -> None:
    class Documented(Contract):
        """Different words, same shape."""

        city: str
        """The town."""
        street: str | None = None

    assert _changes(address=Documented) == []


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        ({"nickname": None}, "data.nickname: field removed"),
        ({"name": int}, "data.name: type changed (type: 'string' -> 'integer')"),
        ({"name": str}, "data.name: type changed (minLength: 1 -> None)"),
        ({"email": str}, "data.email: new field is required"),
        ({"nickname": str}, "data.nickname: became required"),
        ({"name": (str, "anonymous")}, "data.name: no longer required"),
        ({"tags": (list[int], [])}, "data.tags[]: type changed (type: 'string' -> 'integer')"),
        ({"address": str}, "data.address: type changed (an object with fields became"),
        ({"mood": (Literal["happy", "sad", "meh"], "happy")}, "data.mood: type changed (enum:"),
    ],
    ids=[
        "field removed",
        "type changed",
        "constraint dropped",
        "new required field",
        "optional became required",
        "required became optional",
        "list item type changed",
        "object became a string",
        "enum widened",
    ],
)
def test_incompatible_change_is_reported(change: dict[str, object], reported: str) -> None:
    problems = _changes(**change)
    assert any(problem.startswith(reported) for problem in problems), problems


def test_nested_break_is_reported_at_its_path() -> None:
    class Moved(Contract):
        city: int
        street: str | None = None

    assert _changes(address=Moved) == [
        "data.address.city: type changed (type: 'string' -> 'integer')"
    ]


# --- the one exception: refusing what could never be sent safely (issue 12) -------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({}, {"name": MessageId}),
        ({}, {"nickname": (Id | None, None)}),
        ({}, {"tags": (list[HeaderValue], [])}),
        ({"labels": (dict[str, str], {})}, {"labels": (NatsHeaders, {})}),
    ],
    ids=["id pattern and length", "optional id gets a minimum length", "header values",
         "header map"],
)  # fmt: skip
def test_safe_text_tightenings_are_compatible(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    assert _between(before, after) == []


@pytest.mark.parametrize(
    ("before", "after", "reported"),
    [
        ({}, {"name": Annotated[str, StringConstraints(min_length=1, pattern="^[a-z]+$")]},
         "data.name: type changed (pattern: None -> '^[a-z]+$')"),
        ({"name": Annotated[str, StringConstraints(min_length=1, pattern="^[a-z]+$")]},
         {"name": MessageId}, "data.name: type changed (pattern: '^[a-z]+$' -> "),
        ({"name": Annotated[str, StringConstraints(min_length=1, max_length=9)]},
         {"name": MessageId}, "data.name: type changed (maxLength: 9 -> 512)"),
        ({"labels": (dict[str, str], {})},
         {"labels": (dict[Annotated[str, StringConstraints(pattern="^[a-z]+$")], str], {})},
         "data.labels: type changed"),
    ],
    ids=["another pattern", "a pattern replaced", "a bound changed", "other key pattern"],
)  # fmt: skip
def test_other_tightenings_still_need_a_new_version(
    before: dict[str, Any], after: dict[str, Any], reported: str
) -> None:
    problems = _between(before, after)
    assert any(problem.startswith(reported) for problem in problems), problems


def _between(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Compare two variants of PersonV1, each with fields replaced as `_changes` does."""
    return incompatibilities(_schema(_variant(**before)), _schema(_variant(**after)))


# --- releasing ----------------------------------------------------------------------------------


def test_release_writes_once_and_never_overwrites(tmp_path: Path) -> None:
    assert release(tmp_path, ["ha.event.v1"]) == [f"released {tmp_path / 'ha.event.v1.json'}"]
    written = (tmp_path / "ha.event.v1.json").read_text()
    with pytest.raises(FileExistsError, match=r"ha\.event\.v1"):
        release(tmp_path, ["ha.event.v1", "rule.fired.v1"])
    assert not (tmp_path / "rule.fired.v1.json").exists()
    assert main(["release", str(tmp_path), "ha.event.v1"]) == 1
    assert (tmp_path / "ha.event.v1.json").read_text() == written


def test_release_without_types_releases_every_new_one(tmp_path: Path) -> None:
    release(tmp_path, ["ha.event.v1"])
    lines = release(tmp_path, [])
    assert len(lines) == len(REGISTRY) - 1
    assert release(tmp_path, []) == []


def test_release_refuses_unregistered_types(tmp_path: Path) -> None:
    assert main(["release", str(tmp_path), "foo.bar.v1"]) == 1
    assert list(tmp_path.iterdir()) == []


def test_load_baseline_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"type": "x", "schema": {}}))
    with pytest.raises(ValueError, match="not a baseline"):
        load_baseline(path)


def test_baselines_are_not_base_models() -> None:
    assert not isinstance(make_baseline("ha.event.v1"), BaseModel)
