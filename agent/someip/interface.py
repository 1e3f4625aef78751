"""A SOME/IP service interface, declared once and shared by provider and consumer.

Methods (request/response or fire-and-forget), events (in eventgroups) and fields (a value with
an optional getter method, setter method and notifier event). ``reliable`` puts a method or event
on TCP (bulk data), otherwise UDP (at most 1400 payload bytes per message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.someip.message import EVENT_ID_FLAG
from agent.someip.serialization import VOID, DataType


@dataclass(frozen=True)
class MethodSpec:
    method_id: int
    request: DataType = VOID
    response: DataType = VOID
    reliable: bool = False
    fire_and_forget: bool = False


@dataclass(frozen=True)
class EventSpec:
    event_id: int
    type: DataType
    eventgroups: tuple[int, ...]
    reliable: bool = False


@dataclass(frozen=True)
class FieldSpec:
    type: DataType
    getter: int | None = None
    setter: int | None = None
    notifier: int | None = None
    eventgroups: tuple[int, ...] = ()
    reliable: bool = False


@dataclass(frozen=True)
class ServiceInterface:
    name: str
    service_id: int
    instance_id: int
    major_version: int
    minor_version: int
    methods: Mapping[str, MethodSpec] = field(default_factory=dict)
    events: Mapping[str, EventSpec] = field(default_factory=dict)
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids: dict[int, str] = {}

        def claim(ident: int, what: str, event: bool) -> None:
            if not 0 <= ident <= 0xFFFF or bool(ident & EVENT_ID_FLAG) != event:
                kind = "an event id (0x8000..0xFFFF)" if event else "a method id (0x0000..0x7FFF)"
                raise ValueError(f"{self.name}: {what} 0x{ident:04x} is not {kind}")
            if ident in ids:
                raise ValueError(f"{self.name}: {what} reuses id 0x{ident:04x} of {ids[ident]}")
            ids[ident] = what

        for name, method in self.methods.items():
            claim(method.method_id, f"method {name}", False)
        for name, event_spec in self.events.items():
            claim(event_spec.event_id, f"event {name}", True)
            if not event_spec.eventgroups:
                raise ValueError(f"{self.name}: event {name} is in no eventgroup")
        for name, spec in self.fields.items():
            for ident, what, event in ((spec.getter, "getter", False), (spec.setter, "setter", False),
                                       (spec.notifier, "notifier", True)):
                if ident is not None:
                    claim(ident, f"field {name} {what}", event)
            if spec.notifier is not None and not spec.eventgroups:
                raise ValueError(f"{self.name}: field {name} has a notifier but no eventgroup")

    @property
    def eventgroups(self) -> set[int]:
        groups = {group for event in self.events.values() for group in event.eventgroups}
        return groups | {group for spec in self.fields.values() for group in spec.eventgroups}

    def group_is_reliable(self, eventgroup_id: int) -> bool:
        """True if an event or field notifier of the eventgroup goes over TCP."""
        specs: list[EventSpec | FieldSpec] = [*self.events.values(), *self.fields.values()]
        return any(eventgroup_id in spec.eventgroups and spec.reliable for spec in specs)

    def event_by_id(self, event_id: int) -> tuple[str, DataType] | None:
        for name, event in self.events.items():
            if event.event_id == event_id:
                return name, event.type
        for name, spec in self.fields.items():
            if spec.notifier == event_id:
                return name, spec.type
        return None
