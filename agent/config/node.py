"""A YAML mapping with its location, for validation errors that name file and key.

Every accessor raises :class:`~agent.errors.ConfigurationError` naming the file,
the dotted key and the reason; nothing falls back silently. Unknown keys are an
error too (:meth:`Node.done`), so a typo never goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.errors import ConfigurationError

T = TypeVar("T")
_MISSING: Any = object()


def load_yaml(path: str | Path) -> Node:
    """Read a YAML file with ``safe_load`` and wrap its top-level mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigurationError(f"cannot read: {e.strerror or e}", source=str(p)) from e
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x})", source=str(p)) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigurationError(f"invalid YAML: {where}{problem}", source=str(p)) from e
    if data is None:
        data = {}
    return Node(data, source=str(p), path="")


class Node:
    """A mapping value with the file it came from and its dotted path."""

    def __init__(self, data: Any, *, source: str, path: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self._used: set[str] = set()

    # -- errors -------------------------------------------------------------
    def key_path(self, key: str | None = None) -> str:
        if key is None:
            return self.path or "(top level)"
        return f"{self.path}.{key}" if self.path else key

    def error(self, reason: str, key: str | None = None) -> ConfigurationError:
        return ConfigurationError(reason, source=self.source, key=self.key_path(key))

    # -- access -------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.error("required key is missing", key)
            return default
        return self.data[key]

    def get(self, key: str, kind: type[T], default: Any = _MISSING) -> T:
        """A scalar of ``kind``; ints are accepted where floats are asked for."""
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value  # type: ignore[no-any-return]
        return self._check(key, value, kind)

    def _check(self, key: str, value: Any, kind: type[T]) -> T:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if kind is int and isinstance(value, bool):
            raise self.error(f"expected an integer, got {value!r}", key)
        if not isinstance(value, kind):
            raise self.error(f"expected {kind.__name__}, got {_kind(value)} {value!r}", key)
        return value

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self.get(key, float, default)
        if value is None:
            return value  # type: ignore[unreachable]
        if minimum is not None and value < minimum:
            raise self.error(f"must be >= {minimum}, got {value}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"must be <= {maximum}, got {value}", key)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self.get(key, int, default)
        if value is None:
            return value  # type: ignore[unreachable]
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            fmt = "#x" if max(abs(value), minimum or 0, maximum or 0) > 255 else "d"
            lo = "" if minimum is None else format(minimum, fmt)
            hi = "" if maximum is None else format(maximum, fmt)
            raise self.error(f"must be in [{lo}, {hi}], got {value:{fmt}}", key)
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}; got {value!r}", key)
        return value

    def child(self, key: str, default: Any = _MISSING) -> Node:
        value = self.raw(key, {} if default is _MISSING else default)
        if default is _MISSING and key not in self.data:
            raise self.error("required section is missing", key)
        return Node(value, source=self.source, path=self.key_path(key))

    def children(self, key: str, *, required: bool = True) -> Iterator[tuple[str, Node]]:
        """The entries of a mapping of named sections (``ecus: {bms: {...}}``)."""
        value = self.raw(key, _MISSING if required else {})
        section = Node(value, source=self.source, path=self.key_path(key))
        for name in section.data:
            if not isinstance(name, str):
                raise section.error(f"names must be strings, got {name!r}")
            section._used.add(name)
            yield name, section.child(name)

    def items(self, key: str, parse: Callable[[Node], T], default: Any = _MISSING) -> list[T]:
        """A list of mappings, each parsed by ``parse``."""
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise self.error(f"expected a list, got {_kind(value)}", key)
        return [parse(Node(v, source=self.source, path=f"{self.key_path(key)}[{i}]"))
                for i, v in enumerate(value)]

    def done(self) -> None:
        """Reject keys nobody asked for: a typo must not pass silently."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(f"unknown key {unknown[0]!r}", None) if len(unknown) == 1 else \
                self.error(f"unknown keys {', '.join(map(repr, unknown))}", None)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
