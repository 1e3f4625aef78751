"""A configuration change: checked, written, read back, and undone as a whole if any ECU fails.

Pure: no bus, no clock. The ECUs are reached through an :class:`EcuAccess`
(:class:`update_agent.remote_config.access.VehicleAccess` over UDS and CAN;
an in-memory one in the unit tests). :func:`apply_change` runs, in order:

1. **gate** - every ECU concerned must run at least the item's
   ``min_version`` (F189); any ECU too old refuses the whole change before
   anything is written (:class:`VersionGateError`, a vehicle-state error:
   flash first, then configure);
2. **previous** - read every ECU concerned, which is also the journal entry a
   rollback needs (``on_event``);
3. **write** - diagnostic items one ECU at a time, broadcast items with one
   frame for all their ECUs; a refused write (an NRC) stops the writing;
4. **verify** - read every ECU back; a value that is not the one written fails
   the change;
5. **rollback** - on any failure, every ECU of every item touched so far that
   is not on its previous value gets it back (a broadcast item by one frame
   when its ECUs shared one previous value, else by a diagnostic write of the
   read-back DID per ECU), then is read back again.

The outcome is ``applied``, ``rolled_back`` (every ECU confirmed on its previous
value) or ``rollback_failed`` (some ECU on neither: say which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.errors import ConfigurationError, NegativeResponseError, OtaError, VehicleStateError
from update_agent.remote_config.items import Catalog, ConfigItem, at_least

#: what a change reports as it goes: (event, details) - the journal hook
EventSink = Callable[[str, Mapping[str, Any]], None]


class VersionGateError(VehicleStateError):
    """An ECU runs older software than a configuration item needs; nothing was written."""

    def __init__(self, message: str, *, too_old: Mapping[str, tuple[str, str]]) -> None:
        super().__init__(message)
        #: ECU -> (running version, version needed)
        self.too_old = dict(too_old)


class EcuAccess(Protocol):
    """How a change reaches the ECUs; every method raises the stack's normalised errors."""

    def software_version(self, ecu: str) -> str: ...

    def read(self, item: ConfigItem, ecu: str) -> bytes: ...

    def write(self, item: ConfigItem, ecu: str, data: bytes) -> None:
        """Diagnostic write of ``item.did`` on one ECU (session, security access, 0x2E)."""
        ...

    def broadcast(self, item: ConfigItem, data: bytes) -> None:
        """Send the item's broadcast frame once, for every ECU of the item."""
        ...


@dataclass(frozen=True)
class Assignment:
    item: ConfigItem
    value: str
    data: bytes
    ecus: tuple[str, ...]


@dataclass
class EcuOutcome:
    item: str
    ecu: str
    previous: str | None = None
    wanted: str | None = None
    read_back: str | None = None
    #: pending | confirmed | refused | not_confirmed | not_written | restored | unchanged | restore_failed
    state: str = "pending"
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "ecu": self.ecu, "previous": self.previous, "wanted": self.wanted,
                "read_back": self.read_back, "state": self.state, "error": self.error}


@dataclass
class ChangeResult:
    #: applied | rolled_back | rollback_failed
    state: str = "applied"
    reason: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    outcomes: list[EcuOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "applied"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "versions": self.versions,
                "ecus": [o.to_dict() for o in self.outcomes]}


def plan_change(catalog: Catalog, assignments: Sequence[tuple[str, str]],
                ecus: Sequence[str] | None = None) -> list[Assignment]:
    """Resolve ``NAME=VALUE`` pairs: items exist, values encode, ``ecus`` restrict diagnostic items only."""
    planned = []
    for name, value in assignments:
        item = catalog.item(name)
        data = item.encoding.encode(value)
        targets = tuple(item.ecus)
        if ecus:
            unknown = [e for e in ecus if e not in item.ecus]
            if unknown:
                raise _config_error(catalog, f"item {name!r} does not concern ECU {unknown[0]!r} "
                                             f"(its ECUs: {', '.join(item.ecus)})")
            if item.is_broadcast and set(ecus) != set(item.ecus):
                raise _config_error(catalog, f"item {name!r} is broadcast: every ECU of it ({', '.join(item.ecus)}) "
                                             "applies the frame, it cannot be limited to some")
            targets = tuple(e for e in item.ecus if e in ecus)
        planned.append(Assignment(item=item, value=value, data=data, ecus=targets))
    if len({a.item.name for a in planned}) != len(planned):
        raise _config_error(catalog, "an item is set twice in one change")
    return planned


def _config_error(catalog: Catalog, reason: str) -> ConfigurationError:
    return ConfigurationError(reason, source=catalog.source)


def check_versions(access: EcuAccess, plan: Sequence[Assignment]) -> dict[str, str]:
    """Every ECU's software version; VersionGateError if one is below an item's minimum."""
    versions: dict[str, str] = {}
    too_old: dict[str, tuple[str, str]] = {}
    why = []
    for a in plan:
        for ecu in a.ecus:
            if ecu not in versions:
                versions[ecu] = access.software_version(ecu)
            need = a.item.ecus[ecu]
            if not at_least(versions[ecu], need):
                too_old[ecu] = (versions[ecu], need)
                why.append(f"{a.item.name} needs {ecu} on software {need} or newer, it runs {versions[ecu]}")
    if too_old:
        raise VersionGateError("refused before writing: " + "; ".join(why), too_old=too_old)
    return versions


def apply_change(access: EcuAccess, plan: Sequence[Assignment], *, on_event: EventSink | None = None,
                 ) -> ChangeResult:
    """Apply ``plan`` all or nothing (see the module docstring). VersionGateError before any write."""
    emit = on_event or (lambda event, details: None)
    result = ChangeResult(versions=check_versions(access, plan))
    previous: dict[tuple[str, str], bytes] = {}
    outcomes: dict[tuple[str, str], EcuOutcome] = {}
    for a in plan:
        for ecu in a.ecus:
            data = access.read(a.item, ecu)
            previous[(a.item.name, ecu)] = data
            outcomes[(a.item.name, ecu)] = EcuOutcome(a.item.name, ecu, previous=a.item.encoding.decode(data),
                                                      wanted=a.item.encoding.decode(a.data))
    result.outcomes = list(outcomes.values())
    emit("previous", {f"{item}@{ecu}": data.hex() for (item, ecu), data in previous.items()})
    touched: list[Assignment] = []
    for a in plan:
        touched.append(a)
        failure = _write(access, a, outcomes)
        if failure is None:
            failure = _verify(access, a, outcomes)
        emit("written", {"item": a.item.name, "ok": failure is None, "error": failure})
        if failure is not None:
            result.reason = failure
            result.state = _rollback(access, touched, previous, outcomes)
            emit("rolled_back", {"state": result.state})
            return result
    return result


def _write(access: EcuAccess, a: Assignment, outcomes: dict[tuple[str, str], EcuOutcome]) -> str | None:
    if a.item.is_broadcast:
        try:
            access.broadcast(a.item, a.data)
        except OtaError as e:
            return f"{a.item.name}: broadcast not sent: {e}"
        return None
    for ecu in a.ecus:
        outcome = outcomes[(a.item.name, ecu)]
        try:
            access.write(a.item, ecu, a.data)
        except OtaError as e:
            outcome.state = "refused" if isinstance(e, NegativeResponseError) else "not_written"
            outcome.error = str(e)
            return f"{a.item.name}: {ecu} {outcome.state} the write: {e}"
    return None


def _verify(access: EcuAccess, a: Assignment, outcomes: dict[tuple[str, str], EcuOutcome]) -> str | None:
    failures = []
    for ecu in a.ecus:
        outcome = outcomes[(a.item.name, ecu)]
        try:
            data = access.read(a.item, ecu)
        except OtaError as e:
            outcome.state, outcome.error = "not_confirmed", f"read-back failed: {e}"
            failures.append(f"{ecu} not read back ({e})")
            continue
        outcome.read_back = a.item.encoding.decode(data)
        if data == a.data:
            outcome.state = "confirmed"
        else:
            outcome.state = "not_confirmed"
            outcome.error = f"read back {outcome.read_back}, wrote {outcome.wanted}"
            failures.append(f"{ecu} reads back {outcome.read_back}, not {outcome.wanted}")
    return f"{a.item.name}: " + "; ".join(failures) if failures else None


def _rollback(access: EcuAccess, touched: Sequence[Assignment], previous: Mapping[tuple[str, str], bytes],
              outcomes: dict[tuple[str, str], EcuOutcome]) -> str:
    ok = True
    for a in reversed(touched):
        off: list[str] = []
        for ecu in a.ecus:
            try:
                now = access.read(a.item, ecu)
            except OtaError:
                now = None
            if now != previous[(a.item.name, ecu)]:
                off.append(ecu)
            elif outcomes[(a.item.name, ecu)].state == "pending":
                outcomes[(a.item.name, ecu)].state = "unchanged"
        if not off:
            continue
        olds = {previous[(a.item.name, ecu)] for ecu in a.ecus}
        try:
            if a.item.is_broadcast and len(olds) == 1 and set(a.ecus) == set(a.item.ecus):
                access.broadcast(a.item, olds.pop())
            else:
                for ecu in off:
                    access.write(a.item, ecu, previous[(a.item.name, ecu)])
        except OtaError as e:
            for ecu in off:
                outcomes[(a.item.name, ecu)].error = f"restore failed: {e}"
        for ecu in off:
            outcome = outcomes[(a.item.name, ecu)]
            try:
                back = access.read(a.item, ecu)
            except OtaError as e:
                back = None
                outcome.error = f"restore not read back: {e}"
            if back == previous[(a.item.name, ecu)]:
                outcome.state = "restored"
                outcome.read_back = a.item.encoding.decode(back)
            else:
                outcome.state = "restore_failed"
                ok = False
    return "rolled_back" if ok else "rollback_failed"


def restore_values(access: EcuAccess, catalog: Catalog, previous: Sequence[tuple[str, str, str]]) -> ChangeResult:
    """Put ECUs back on journalled values ``(item, ecu, value)``: only the ECUs not on them are written
    (as a change's own rollback does), then read back. State ``rolled_back`` or ``rollback_failed``."""
    wanted: dict[str, dict[str, bytes]] = {}
    for name, ecu, value in previous:
        item = catalog.item(name)
        if ecu not in item.ecus:
            raise _config_error(catalog, f"item {name!r} does not concern ECU {ecu!r}")
        wanted.setdefault(name, {})[ecu] = item.encoding.encode(value)
    plan: list[Assignment] = []
    old: dict[tuple[str, str], bytes] = {}
    outcomes: dict[tuple[str, str], EcuOutcome] = {}
    for name, values in wanted.items():
        item = catalog.item(name)
        ecus = tuple(e for e in item.ecus if e in values)
        plan.append(Assignment(item=item, value="", data=b"", ecus=ecus))
        for ecu in ecus:
            old[(name, ecu)] = values[ecu]
            outcomes[(name, ecu)] = EcuOutcome(name, ecu, wanted=item.encoding.decode(values[ecu]))
    state = _rollback(access, plan, old, outcomes)
    return ChangeResult(state=state, reason=None if state == "rolled_back" else "some ECU is on neither value",
                        outcomes=list(outcomes.values()))
