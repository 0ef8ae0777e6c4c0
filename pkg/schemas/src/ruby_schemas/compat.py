"""The compatibility policy, as code: compare a released schema with the current one.

A released type version has a baseline file `<type>.json` holding the envelope's JSON Schema and
an encoded example message as they were on release. Baselines are written once, by
`python -m ruby_schemas.compat release DIR [TYPE ...]`, and never regenerated: the release
command refuses to overwrite one. The tests compare every baseline with the current model.

Compatible means: every baseline field still exists with the same type (same JSON Schema
keywords, ignoring titles, descriptions and defaults), the set of required fields is unchanged
at every level, and any added field is optional. Everything else needs a new type version, with
one exception: a string that had no pattern may gain one of the `SAFE_TEXT_PATTERNS` (with the
`minLength` / `maxLength` of its type), and a map its `propertyNames` header-name pattern. These
refuse only what could never be sent safely (control characters and whitespace in an id or a
header), so no message a producer of ours sends becomes unreadable (ADR-0027, issue 12).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic.json_schema import JsonSchemaValue

from ruby_schemas.examples import example_envelope
from ruby_schemas.export import message_schema, render
from ruby_schemas.primitives import HEADER_NAME_PATTERN, HEADER_VALUE_PATTERN, ID_PATTERN
from ruby_schemas.registry import REGISTRY, Registry, encode

BASELINE_NOTE = "Released contract baseline: never edit or regenerate (docs/adr/0027)."
"""The `$comment` of every baseline file."""

_IGNORED = frozenset(
    {"title", "description", "default", "examples", "$comment", "$schema", "$defs"}
)
_SUBSCHEMA = ("items", "additionalProperties", "contains", "not")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_STRUCTURE = frozenset({"properties", "required", "$ref"})

SAFE_TEXT_PATTERNS = frozenset({ID_PATTERN, HEADER_NAME_PATTERN, HEADER_VALUE_PATTERN})
"""Patterns a released string field may gain without a new version (see the module docs)."""
_HEADER_NAMES = {"pattern": HEADER_NAME_PATTERN}


@dataclass(frozen=True)
class Baseline:
    """A released type version: its envelope schema and an example message, frozen on release."""

    message_type: str
    schema: JsonSchemaValue
    example: JsonSchemaValue


def make_baseline(message_type: str, registry: Registry = REGISTRY) -> Baseline:
    """Return the baseline of `message_type` as the current model defines it."""
    example = json.loads(encode(example_envelope(message_type)))
    schema = message_schema(message_type, registry)
    del schema["$comment"]  # the exporter's "generated" marker does not apply to a baseline
    return Baseline(message_type, schema, example)


def render_baseline(baseline: Baseline) -> str:
    """Return the baseline file's deterministic text."""
    document = {
        "$comment": BASELINE_NOTE,
        "type": baseline.message_type,
        "schema": baseline.schema,
        "example": baseline.example,
    }
    return render(document)


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file; raises `ValueError` if it is not one."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or set(document) != {"$comment", "type", "schema", "example"}:
        raise ValueError(f"{path} is not a baseline (keys $comment, type, schema, example)")
    return Baseline(document["type"], document["schema"], document["example"])


def incompatibilities(baseline: JsonSchemaValue, current: JsonSchemaValue) -> list[str]:
    """Return one line per way `current` breaks the released `baseline`; empty if compatible.

    Walks both schemas together, following `$ref`s into each one's own `$defs`. Each line starts
    with the dotted path of the field concerned (`[]` for array items, `{}` for map values).
    """
    return _Walk(baseline, current).compare(baseline, current, "")


class _Walk:
    def __init__(self, old_root: JsonSchemaValue, new_root: JsonSchemaValue) -> None:
        self.old_root, self.new_root = old_root, new_root
        self.active: set[tuple[object, object]] = set()  # the $refs being compared, for cycles

    def compare(self, old: object, new: object, path: str) -> list[str]:
        """Compare two (sub)schemas found at `path`."""
        where = path or "<message>"
        if not isinstance(old, dict) or not isinstance(new, dict):
            return [] if old == new else [f"{where}: type changed ({old!r} -> {new!r})"]
        refs = (old.get("$ref"), new.get("$ref"))
        if refs in self.active:
            return []
        if refs != (None, None):
            self.active.add(refs)
        try:
            return self._compare(_resolve(old, self.old_root), _resolve(new, self.new_root), path)
        finally:
            self.active.discard(refs)

    def _compare(self, old: JsonSchemaValue, new: JsonSchemaValue, path: str) -> list[str]:
        where = path or "<message>"
        if ("properties" in old) != ("properties" in new):
            return [f"{where}: type changed (an object with fields became something else)"]
        problems = self._fields(old, new, path) if "properties" in old else []
        may_add = _safe_text_additions(old, new)
        for key in sorted((old.keys() | new.keys()) - _IGNORED - _STRUCTURE):
            before, after = old.get(key), new.get(key)
            if before is None and key in may_add:
                continue
            if key in _SUBSCHEMA and isinstance(before, dict) and isinstance(after, dict):
                suffix = "[]" if key == "items" else "{}" if key == "additionalProperties" else ""
                problems += self.compare(before, after, path + suffix)
            elif (
                key in _SUBSCHEMA_LISTS
                and isinstance(before, list)
                and isinstance(after, list)
                and len(before) == len(after)
            ):
                for old_branch, new_branch in zip(before, after, strict=True):
                    problems += self.compare(old_branch, new_branch, path)
            elif before != after:
                problems.append(f"{where}: type changed ({key}: {before!r} -> {after!r})")
        return problems

    def _fields(self, old: JsonSchemaValue, new: JsonSchemaValue, path: str) -> list[str]:
        prefix = f"{path}." if path else ""
        old_fields, new_fields = old["properties"], new["properties"]
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        problems = []
        for name in old_fields:
            if name not in new_fields:
                problems.append(f"{prefix}{name}: field removed")
            else:
                problems += self.compare(old_fields[name], new_fields[name], prefix + name)
        for name in sorted(new_required - old_required):
            what = "became required" if name in old_fields else "new field is required"
            problems.append(f"{prefix}{name}: {what}")
        for name in sorted((old_required - new_required) & new_fields.keys()):
            problems.append(f"{prefix}{name}: no longer required")
        return problems


def _safe_text_additions(old: JsonSchemaValue, new: JsonSchemaValue) -> frozenset[str]:
    """The keywords `new` may add to `old` as a safe-text tightening, if any."""
    string = old.get("type") == "string" and "pattern" not in old
    if string and new.get("pattern") in SAFE_TEXT_PATTERNS:
        return frozenset({"pattern", "minLength", "maxLength"})
    if old.get("type") == "object" and new.get("propertyNames") == _HEADER_NAMES:
        return frozenset({"propertyNames"})
    return frozenset()


def _resolve(schema: JsonSchemaValue, root: JsonSchemaValue) -> JsonSchemaValue:
    """Replace a local `$ref` by its target, keeping sibling keywords."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    target = root.get("$defs", {})[ref.removeprefix("#/$defs/")]
    siblings = {key: value for key, value in schema.items() if key != "$ref"}
    return {**_resolve(target, root), **siblings}


def release(
    directory: Path, message_types: Sequence[str], registry: Registry = REGISTRY
) -> list[str]:
    """Write a baseline for each type that has none yet; return one line per file written.

    A released baseline is never rewritten: raises `FileExistsError`, writing nothing, if any of
    `message_types` already has one; `KeyError` if one is not registered. With no types given,
    releases every registered type that has no baseline.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if message_types:
        existing = [t for t in message_types if (directory / f"{t}.json").exists()]
        if existing:
            raise FileExistsError(f"already released, never rewritten: {', '.join(existing)}")
    else:
        message_types = [t for t in registry if not (directory / f"{t}.json").exists()]
    written = []
    for message_type in message_types:
        path = directory / f"{message_type}.json"
        path.write_text(render_baseline(make_baseline(message_type, registry)), encoding="utf-8")
        written.append(f"released {path}")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ruby_schemas.compat release DIR [TYPE ...]`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ruby_schemas.compat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="write baselines of released types")
    release_parser.add_argument("directory", type=Path, help="the baseline directory")
    release_parser.add_argument("types", nargs="*", help="types to release (default: all new)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.types if t not in REGISTRY]
    if unknown:
        print(f"not registered: {', '.join(unknown)}", file=sys.stderr)
        return 1
    try:
        lines = release(args.directory, args.types)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
