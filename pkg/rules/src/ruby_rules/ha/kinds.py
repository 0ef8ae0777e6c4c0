"""How one Home Assistant trigger, condition or action becomes a native processor config.

A `Kind` says which native kind an HA one becomes (or that Ruby Core cannot run it yet) and
how each of its fields translates: copied under a name, converted (a duration), refused as
not supported yet, or left out (a display ``alias``). A field no `Kind` lists is copied as it
is, so the native config refuses it as an unknown field, at the HA line. The tables of every
kind are in `ruby_rules.ha.features`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ruby_rules.ha.source import Native, Writer, ha_duration, ha_offset, is_template
from ruby_rules.yamldoc import Path

Handler = Callable[[Writer, Path, Path, Native], None]
"""Translates one HA field: (writer, the field's HA path, the native item's path, the native
item being built)."""
Finish = Callable[[Writer, Path, Path, Native], None]
"""Checks or completes a whole item once its fields are translated (same arguments, the
item's own HA path second)."""

_NUMBER: Final = re.compile(r"\s*[-+]?\d+(\.\d+)?\s*")


@dataclass(frozen=True, slots=True)
class Kind:
    """One HA trigger platform, condition or action, and its native counterpart."""

    native: str | None
    """The native kind, or ``None``: Ruby Core cannot run it yet (refused, by name)."""
    fields: Mapping[str, Handler] = field(default_factory=dict)
    """How each HA field translates; an unlisted one is copied (the native config refuses it)."""
    finish: Finish | None = None
    """A check of the whole item, or a completion, once every field is translated."""
    hint: str = ""
    """For a kind not supported yet: what to do instead, if anything."""


def translate(
    w: Writer, kind: Kind, src: Path, dst: Path, common: Mapping[str, Handler]
) -> Native | None:
    """The native item for the HA item at ``src``.

    Fields of ``common`` apply to every kind of the role (``id``, ``alias``, ``enabled``);
    ``kind.fields`` wins over them. Returns ``None`` when the kind is not supported yet.
    """
    item = w.get(src)
    assert isinstance(item, dict)  # noqa: S101 - the dispatchers call this with a mapping only
    if kind.native is None:
        return None
    out: Native = {"kind": kind.native}
    w.mark((*dst, "kind"), src)
    for key in item:
        handler = kind.fields.get(key) or common.get(key) or copy(key)
        handler(w, (*src, key), dst, out)
    if kind.finish is not None:
        kind.finish(w, src, dst, out)
    return out


def copy(name: str) -> Handler:
    """The HA value, as it is, under ``name``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        out[name] = w.copy(src, (*dst, name))

    return handle


def drop(w: Writer, src: Path, dst: Path, out: Native) -> None:
    """A field with no effect on what runs (``alias``, ``enabled`` once checked)."""


def not_yet(feature: str, hint: str = "") -> Handler:
    """A field Ruby Core cannot honour yet: refused, naming ``feature``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        w.not_yet(src, feature, hint)

    return handle


def not_yet_unless(allowed: object, feature: str) -> Handler:
    """Refused, naming ``feature``, unless the value is ``allowed`` (HA's default)."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        if w.get(src) != allowed:
            w.not_yet(src, feature)

    return handle


def duration(name: str) -> Handler:
    """An HA time period (``"00:05:00"``, ``{minutes: 5}``, ``300``) under ``name``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = ha_duration(w, src)
        if value is not None:
            out[name] = value
            w.mark((*dst, name), src)

    return handle


def offset(name: str) -> Handler:
    """An HA signed time period (``"-01:00:00"``: earlier) under ``name``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = ha_offset(w, src)
        if value is not None:
            out[name] = value
            w.mark((*dst, name), src)

    return handle


def any_state(name: str) -> Handler:
    """``from``/``to``: ``null`` means any state (left out), otherwise copied."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        if w.get(src) is not None:
            out[name] = w.copy(src, (*dst, name))

    return handle


def text_id(name: str) -> Handler:
    """An id HA reads as text: a number such as ``1`` becomes ``"1"``."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        w.mark((*dst, name), src)
        out[name] = as_text(w.get(src))

    return handle


def as_text(value: object) -> object:
    """A number as HA reads an id, as text (``1`` -> ``"1"``); anything else as it is."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return str(value) if is_number else value


def bound(name: str) -> Handler:
    """``above``/``below``: a number (HA also reads ``"25"``), or an entity as it is."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        value = w.get(src)
        if isinstance(value, str) and _NUMBER.fullmatch(value):
            out[name] = float(value)
            w.mark((*dst, name), src)
        else:
            out[name] = w.copy(src, (*dst, name))

    return handle


def no_template(name: str, feature: str) -> Handler:
    """Copied under ``name``, unless it holds a template: ``feature`` is not supported yet."""

    def handle(w: Writer, src: Path, dst: Path, out: Native) -> None:
        if is_template(w.get(src)):
            w.not_yet(src, feature)
        else:
            out[name] = w.copy(src, (*dst, name))

    return handle
