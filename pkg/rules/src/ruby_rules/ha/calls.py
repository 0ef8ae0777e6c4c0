"""HA service calls (``action:``, ``service:``, ``scene:``) and the condition step, natively.

A call's target may be written in ``target``, as ``entity_id`` next to the service, or inside
``data``/``data_template`` (HA merges all of them): the native ``call`` gets one ``target``
and one ``data``. A condition step (``- condition: state ...`` among the actions), which ends
the run quietly when it does not hold, becomes ``if: not <condition> then: stop``.
"""

from __future__ import annotations

from typing import Final

from ruby_rules.ha.kinds import Kind, not_yet
from ruby_rules.ha.source import Native, Writer, is_template
from ruby_rules.ha.translate import condition
from ruby_rules.yamldoc import Path

TARGET_KEYS: Final = ("entity_id", "area_id", "device_id")
"""Target fields Ruby Core sends; HA's ``floor_id`` and ``label_id`` are not supported yet."""


def _service(w: Writer, src: Path, dst: Path, out: Native) -> None:
    if "service" in out:
        w.refuse(src, "give the service once: 'action', 'service' or 'service_template'")
    else:  # a template is rendered when the step runs
        out["service"] = w.copy(src, (*dst, "service"))


def _target_field(w: Writer, src: Path, dst: Path, out: Native) -> None:
    key = src[-1]
    assert isinstance(key, str)  # noqa: S101 - a mapping's key
    target = out.setdefault("target", {})
    assert isinstance(target, dict)  # noqa: S101 - only this module writes it
    if key in target:
        w.refuse(src, f"'{key}' is given twice (in 'target', next to the service or in 'data')")
        return
    w.values.setdefault((*dst, "target"), w.where(src))
    target[key] = w.copy(src, (*dst, "target", key))


def _target(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if is_template(value):  # rendered when the step runs, to a mapping
        w.mark((*dst, "target"), src)
        target = out.setdefault("target", {})
        assert isinstance(target, dict)  # noqa: S101 - only this module writes it
        target["template"] = w.copy(src, (*dst, "target", "template"))
        return
    if not isinstance(value, dict):
        w.expect(src, "a mapping of entity_id, area_id and device_id")
        return
    w.mark((*dst, "target"), src)
    out.setdefault("target", {})
    for key in value:
        if key in ("floor_id", "label_id"):
            w.not_yet((*src, key), "a target by floor or label", detail=key)
        elif key in TARGET_KEYS:
            _target_field(w, (*src, key), dst, out)
        else:  # the native target refuses it, at its line
            target = out["target"]
            assert isinstance(target, dict)  # noqa: S101 - set just above
            target[key] = w.copy((*src, key), (*dst, "target", key))


def _data(w: Writer, src: Path, dst: Path, out: Native) -> None:
    value = w.get(src)
    if is_template(value):  # rendered when the step runs, to a mapping
        out["data_template"] = w.copy(src, (*dst, "data_template"))
        return
    if not isinstance(value, dict):
        w.expect(src, "a mapping of service data")
        return
    data = out.setdefault("data", {})
    assert isinstance(data, dict)  # noqa: S101 - only this module writes it
    w.values.setdefault((*dst, "data"), w.where(src))
    for key in value:
        if key in TARGET_KEYS:  # HA reads these from the data as the call's target
            _target_field(w, (*src, key), dst, out)
        else:  # data_template after data: the later one wins, as in HA
            data[key] = w.copy((*src, key), (*dst, "data", key))


CALL: Final = Kind(
    "call",
    {
        "action": _service,
        "service": _service,
        "service_template": _service,
        "target": _target,
        "entity_id": _target_field,
        "data": _data,
        "data_template": _data,
        "response_variable": not_yet("'response_variable' (a call's response)"),
    },
)
"""A service call: ``action: light.turn_on`` (or ``service:``, ``service_template:``)."""


def _scene(w: Writer, src: Path, dst: Path, out: Native) -> None:
    out["service"] = "scene.turn_on"
    w.mark((*dst, "service"), src)
    w.mark((*dst, "target"), src)
    out["target"] = {"entity_id": w.copy(src, (*dst, "target", "entity_id"))}


SCENE: Final = Kind("call", {"scene": _scene})
"""``scene: scene.evening``: HA's shorthand for calling ``scene.turn_on`` on it."""


def condition_step(w: Writer, src: Path, dst: Path, out: Native) -> None:
    """Rebuild ``out`` (a condition written as an action) as ``if not <it>: stop``."""
    out.clear()
    inner = (*dst, "conditions", 0)
    for path in (inner, (*dst, "then"), (*dst, "then", 0), (*inner, "conditions")):
        w.mark(path, src)
    native = condition(w, src, (*inner, "conditions", 0))
    if native is None:
        return
    shown = w.shown(src)
    stop: Native = {"kind": "stop", "reason": f"the condition at {shown} did not hold"}
    for key in ("kind", "reason"):
        w.mark((*dst, "then", 0, key), src)
    out.update(
        {
            "kind": "if",
            "conditions": [{"kind": "not", "conditions": [native]}],
            "then": [stop],
        }
    )
