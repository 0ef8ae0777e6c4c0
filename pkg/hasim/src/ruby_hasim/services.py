"""The services of the virtual home, validated and applied as Home Assistant's integrations do.

`Services.call` follows `ServiceRegistry.async_call`: look the service up (`not_found`), refuse
`return_response` (`service_validation_error`), validate the data (`invalid_format`), fire
`call_service`, then run the service on each targeted entity of its domain. Entities that do not
exist are skipped, as Home Assistant only logs them. State writes carry the call's context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ruby_hasim import const
from ruby_hasim.errors import (
    CommandError,
    InvalidFormatError,
    NotFoundError,
    ServiceValidationError,
)
from ruby_hasim.home import ENTITY_ID, Home, HomeSpec, light_attributes
from ruby_hasim.model import Context, JsonObject, JsonValue, State

Coercer = Callable[[JsonValue, str], JsonValue]
"""Validate one service field (its value and path); return the value to use."""

CallKey = tuple[str, str, str | None]
"""(domain, service, entity_id) for counting calls; entity None when nothing was targeted."""

TARGET_KEYS = ("entity_id", "device_id", "area_id", "floor_id", "label_id")


def _number(value: JsonValue, path: str) -> JsonValue:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidFormatError(f"expected float for dictionary value @ {path}")
    try:
        return float(value)
    except ValueError:
        raise InvalidFormatError(f"expected float for dictionary value @ {path}") from None


def _integer(low: int, high: int) -> Coercer:
    def coerce(value: JsonValue, path: str) -> JsonValue:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidFormatError(f"expected int for dictionary value @ {path}")
        try:
            number = int(value)
        except ValueError:
            raise InvalidFormatError(f"expected int for dictionary value @ {path}") from None
        return min(max(number, low), high)

    return coerce


def _ids(value: JsonValue, path: str) -> JsonValue:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidFormatError(f"expected a list for dictionary value @ {path}")
    return [item.strip() for item in items if isinstance(item, str)]


def _entity_ids(value: JsonValue, path: str) -> JsonValue:
    if value == "all":
        return "all"
    ids = _ids(value, path)
    assert isinstance(ids, list)  # noqa: S101  # _ids returns a list or raises
    for entity in ids:
        if not isinstance(entity, str) or not ENTITY_ID.match(entity.lower()):
            raise InvalidFormatError(
                f"Entity {entity} is neither a valid entity ID nor a valid UUID"
            )
    return [entity.lower() for entity in ids if isinstance(entity, str)]


TARGET_SCHEMA: Mapping[str, Coercer] = {
    "entity_id": _entity_ids,
    "device_id": _ids,
    "area_id": _ids,
    "floor_id": _ids,
    "label_id": _ids,
}


def validate(
    data: Mapping[str, JsonValue], schema: Mapping[str, Coercer], where: str
) -> JsonObject:
    """Check `data` against `schema`; raise `InvalidFormatError` in voluptuous' wording."""
    result: JsonObject = {}
    for key, value in data.items():
        coerce = schema.get(key)
        if coerce is None:
            raise InvalidFormatError(f"extra keys not allowed @ {where}['{key}']")
        result[key] = coerce(value, f"{where}['{key}']")
    return result


@dataclass(frozen=True)
class Service:
    """One service: its fields beyond the target ones, required fields and what it does."""

    fields: Mapping[str, Coercer]
    run: Callable[[State, JsonObject, Context], None]
    required: tuple[str, ...] = ()


class Services:
    """The registry of services the virtual home offers, and the count of their calls."""

    def __init__(self, home: Home, spec: HomeSpec) -> None:
        self._home = home
        self._brightness = {
            e.entity_id: b
            for e in spec.entities
            if isinstance(b := e.attributes.get("brightness"), int)
        }
        self.calls: Counter[CallKey] = Counter()
        self.failures: dict[tuple[str, str], CommandError] = {}
        light_fields: dict[str, Coercer] = {
            "brightness": _integer(0, 255),
            "brightness_pct": _integer(0, 100),
            "transition": _number,
        }
        on_off = {
            "turn_on": Service({}, self._switch(on=True)),
            "turn_off": Service({}, self._switch(on=False)),
            "toggle": Service({}, self._switch(on=None)),
        }
        self._registry: dict[str, dict[str, Service]] = {
            "light": {
                "turn_on": Service(light_fields, self._light(on=True)),
                "turn_off": Service({"transition": _number}, self._light(on=False)),
                "toggle": Service(light_fields, self._light(on=None)),
            },
            "switch": on_off,
            "input_boolean": on_off,
            "input_number": {
                "set_value": Service({"value": _number}, self._number_set, ("value",)),
                "increment": Service({}, self._number_step(+1)),
                "decrement": Service({}, self._number_step(-1)),
            },
        }

    def describe(self) -> JsonObject:
        """The registry as Home Assistant's ``get_services`` answers it: per domain, per
        service, its name and its fields beyond the target (without HA's descriptions and
        selectors, which the simulator has none of)."""
        return {
            domain: {
                name: {
                    "name": name.replace("_", " ").capitalize(),
                    "description": "",
                    "fields": {f: {"required": f in service.required} for f in service.fields},
                    "target": {"entity": [{"domain": [domain]}]},
                }
                for name, service in services.items()
            }
            for domain, services in self._registry.items()
        }

    def has(self, domain: str, service: str) -> bool:
        """Whether `domain.service` exists."""
        return service in self._registry.get(domain, {})

    def call(
        self,
        domain: str,
        service: str,
        service_data: JsonObject,
        target: JsonObject,
        context: Context,
        *,
        return_response: bool = False,
    ) -> None:
        """Run a service call to completion; raise a `CommandError` when it fails."""
        handler = self._registry.get(domain, {}).get(service)
        if handler is None:
            raise NotFoundError(
                f"Service {domain}.{service} not found.",
                translation_domain="homeassistant",
                translation_key="service_not_found",
                translation_placeholders={"domain": domain, "service": service},
            )
        if return_response:
            # The WebSocket handler prefixes "Validation error: " (websocket_api/commands.py).
            raise ServiceValidationError(
                "Validation error: An action which does not return responses can't be called "
                "with return_response=True.",
                translation_domain="homeassistant",
                translation_key="service_does_not_support_response",
                translation_placeholders={"return_response": "return_response=True"},
            )
        merged: JsonObject = {**service_data, **target}
        data = validate(merged, {**TARGET_SCHEMA, **handler.fields}, "data")
        for key in handler.required:
            if key not in data:
                raise InvalidFormatError(f"required key not provided @ data['{key}']")
        event_data: JsonObject = {
            "domain": domain,
            "service": service,
            "service_data": _listed_targets(merged),
        }
        self._home.fire(const.EVENT_CALL_SERVICE, event_data, context)
        entities = self._targets(domain, data)
        keys: list[str | None] = [*entities] or [None]
        for entity in keys:
            self.calls[(domain, service, entity)] += 1
        failure = self.failures.get((domain, service))
        if failure is not None:
            raise failure
        fields = {k: v for k, v in data.items() if k not in TARGET_KEYS}
        for entity in entities:
            state = self._home.get(entity)
            if state is not None:
                handler.run(state, fields, context)

    def _targets(self, domain: str, data: JsonObject) -> list[str]:
        wanted = data.get("entity_id", [])
        if wanted == "all":
            return [e for e in self._home.states if e.startswith(f"{domain}.")]
        entities = [e for e in wanted if isinstance(e, str)] if isinstance(wanted, list) else []
        areas = data.get("area_id", [])
        for area in areas if isinstance(areas, list) else []:
            entities += [e for e in self._home.in_area(str(area)) if e not in entities]
        return [e for e in entities if e.startswith(f"{domain}.")]

    def _switch(self, *, on: bool | None) -> Callable[[State, JsonObject, Context], None]:
        def run(state: State, _: JsonObject, context: Context) -> None:
            turn_on = state.state != "on" if on is None else on
            self._home.set_state(state.entity_id, "on" if turn_on else "off", context=context)

        return run

    def _light(self, *, on: bool | None) -> Callable[[State, JsonObject, Context], None]:
        def run(state: State, fields: JsonObject, context: Context) -> None:
            turn_on = state.state != "on" if on is None else on
            brightness = fields.get("brightness")
            if isinstance(pct := fields.get("brightness_pct"), int):
                brightness = round(255 * pct / 100)
            if turn_on and brightness == 0:
                turn_on = False
            current = state.attributes.get("brightness")
            if isinstance(current, int):
                self._brightness[state.entity_id] = current
            if turn_on:
                if not isinstance(brightness, int):
                    brightness = self._brightness.get(state.entity_id, 255)
                self._brightness[state.entity_id] = brightness
            attributes = light_attributes({**state.attributes, "brightness": brightness}, turn_on)
            self._home.set_state(
                state.entity_id, "on" if turn_on else "off", attributes, context=context
            )

        return run

    def _number_set(self, state: State, fields: JsonObject, context: Context) -> None:
        value = fields["value"]
        assert isinstance(value, float)  # noqa: S101  # validated by _number
        low, high = state.attributes.get("min", 0.0), state.attributes.get("max", 100.0)
        if not isinstance(low, int | float) or not isinstance(high, int | float):
            low, high = 0.0, 100.0
        if value < low or value > high:
            raise InvalidFormatError(
                f"Invalid value for {state.entity_id}: {value} (range {low} - {high})"
            )
        self._home.set_state(state.entity_id, str(value), context=context)

    def _number_step(self, sign: int) -> Callable[[State, JsonObject, Context], None]:
        def run(state: State, _: JsonObject, context: Context) -> None:
            step = state.attributes.get("step", 1.0)
            low, high = state.attributes.get("min", 0.0), state.attributes.get("max", 100.0)
            try:
                value = float(state.state) + sign * float(step)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return
            value = min(max(value, float(low)), float(high))  # type: ignore[arg-type]
            self._home.set_state(state.entity_id, str(value), context=context)

        return run


def _listed_targets(data: JsonObject) -> JsonObject:
    """As HA's schema leaves them before firing call_service: a single target id becomes a list
    (``"all"`` stays as it is). Found by the drift test against a real Home Assistant."""
    listed: JsonObject = dict(data)
    for key in ("entity_id", "device_id", "area_id"):
        value = listed.get(key)
        if isinstance(value, str) and value != "all":
            listed[key] = [value]
    return listed
