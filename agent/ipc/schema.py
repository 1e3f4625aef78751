"""Compact schema declarations for IPC messages, with their validator.

A schema is built from a handful of constructors and validates a decoded JSON
value, raising :class:`~agent.ipc.error_codes.SchemaError` whose message names
the dotted path, what was expected and what came::

    TARGET = Record(
        name=Str(min_len=1, max_len=128),
        url=Str(pattern=r"https://\\S+"),
        length=Int(minimum=0),
        sha256=Hex(32),
        delta=Opt(Record(base_sha256=Hex(32), url=Str())),   # optional field
        mode=Opt(Enum("full", "delta")),
    )
    ORDER = Record(targets=ListOf(TARGET, min_items=1), priority=Opt(Int(minimum=0, maximum=9)))

    ORDER.validate({"targets": [{"name": "x"}]}, "params")
    # SchemaError: params.targets[0]: missing required field 'url'

Every schema also exports itself as JSON Schema (draft 2020-12) with
:meth:`Schema.json_schema`, for documentation and for peers written in other
languages (an IVI head unit); the test suite checks the validator against the
``jsonschema`` reference implementation on those exports.

Why a validator by hand rather than ``jsonschema`` at run time: the
declarations use a small subset (types, required/optional fields, enums,
ranges, patterns, lists of records), which this module covers in a few dozen
lines with messages that name the field the way the caller wrote it;
``jsonschema`` would add ``referencing``, ``attrs`` and the Rust extension
``rpds-py`` to every board image (each one to cross-compile, audit and keep
patched) and treats ``1.0`` as an integer, which a byte count must not be.

Semantics worth knowing: ``Int`` rejects floats and booleans; ``Num`` accepts
integers and floats but not booleans, NaN or infinities; ``Record`` rejects
unknown fields (strict on both ends, so a typo never passes); patterns must
match the whole string.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from agent.ipc.error_codes import SchemaError

_SHORT = 60


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    """The kind and a short repr of a value, for messages (long values are cut)."""
    if isinstance(value, (dict, list)):
        return f"{_kind(value)} of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    if len(text) > _SHORT:
        text = text[: _SHORT - 3] + "..."
    return f"{_kind(value)} {text}" if value is not None else "null"


def _fail(where: str, reason: str) -> SchemaError:
    return SchemaError(f"{where}: {reason}")


class Schema(ABC):
    """A declared JSON value. Subclasses implement :meth:`check` and :meth:`json_schema`."""

    doc: str = ""

    def validate(self, value: object, where: str = "value") -> None:
        """Raise :class:`SchemaError` naming ``where`` (a dotted path) if ``value`` does not match."""
        self.check(value, where)

    @abstractmethod
    def check(self, value: object, where: str) -> None:
        """Validate ``value`` found at ``where``."""

    @abstractmethod
    def describe(self) -> str:
        """What is expected, in words ("an integer >= 0")."""

    @abstractmethod
    def _json(self) -> dict[str, Any]:
        """The JSON Schema of this node, without its description."""

    def json_schema(self) -> dict[str, Any]:
        """This schema as a JSON Schema (draft 2020-12) fragment."""
        out = self._json()
        if self.doc:
            out["description"] = self.doc
        return out

    def _expected(self, value: object, where: str) -> SchemaError:
        return _fail(where, f"expected {self.describe()}, got {_show(value)}")


class AnyValue(Schema):
    """Any JSON value (for opaque, daemon-specific details)."""

    def __init__(self, *, doc: str = "") -> None:
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        return None

    def describe(self) -> str:
        return "any value"

    def _json(self) -> dict[str, Any]:
        return {}


class Null(Schema):
    """JSON ``null`` (the result of a method that returns nothing)."""

    def __init__(self, *, doc: str = "") -> None:
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if value is not None:
            raise self._expected(value, where)

    def describe(self) -> str:
        return "null"

    def _json(self) -> dict[str, Any]:
        return {"type": "null"}


class Bool(Schema):
    """``true`` or ``false``."""

    def __init__(self, *, doc: str = "") -> None:
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, bool):
            raise self._expected(value, where)

    def describe(self) -> str:
        return "a boolean"

    def _json(self) -> dict[str, Any]:
        return {"type": "boolean"}


class _Ranged(Schema):
    noun = ""

    def __init__(self, *, minimum: float | None = None, maximum: float | None = None, doc: str = "") -> None:
        if minimum is not None and maximum is not None and minimum > maximum:
            raise ValueError(f"minimum {minimum} > maximum {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.doc = doc

    def _range_check(self, value: float, where: str) -> None:
        if (self.minimum is not None and value < self.minimum) or \
                (self.maximum is not None and value > self.maximum):
            raise self._expected(value, where)

    def describe(self) -> str:
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            return f"{self.noun} in [{lo}, {hi}]"
        if lo is not None:
            return f"{self.noun} >= {lo}"
        if hi is not None:
            return f"{self.noun} <= {hi}"
        return self.noun

    def _bounds(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Int(_Ranged):
    """An integer (never a float such as ``1.0``, never a boolean), optionally bounded."""

    noun = "an integer"

    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, doc: str = "") -> None:
        super().__init__(minimum=minimum, maximum=maximum, doc=doc)

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._expected(value, where)
        self._range_check(value, where)

    def _json(self) -> dict[str, Any]:
        return {"type": "integer", **self._bounds()}


class Num(_Ranged):
    """A finite number (integer or float, never a boolean), optionally bounded."""

    noun = "a number"

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise self._expected(value, where)
        self._range_check(value, where)

    def _json(self) -> dict[str, Any]:
        return {"type": "number", **self._bounds()}


class Str(Schema):
    """A string; ``pattern`` (a Python regex) must match the whole string."""

    def __init__(self, *, pattern: str | None = None, min_len: int = 0, max_len: int | None = None,
                 doc: str = "") -> None:
        if min_len < 0 or (max_len is not None and max_len < min_len):
            raise ValueError(f"bad length bounds [{min_len}, {max_len}]")
        self.pattern = pattern
        self._regex = re.compile(pattern) if pattern is not None else None
        self.min_len = min_len
        self.max_len = max_len
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, str):
            raise self._expected(value, where)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            raise _fail(where, f"expected {self._length()}, got a string of {len(value)}")
        if self._regex is not None and self._regex.fullmatch(value) is None:
            raise self._expected(value, where)

    def _length(self) -> str:
        if self.max_len is None:
            return f"a string of at least {self.min_len} character{'s' if self.min_len != 1 else ''}"
        if self.min_len == self.max_len:
            return f"a string of {self.min_len} characters"
        return f"a string of {self.min_len} to {self.max_len} characters"

    def describe(self) -> str:
        if self.doc and self.pattern is not None:
            return f"{self.doc} (a string matching {self.pattern})"
        if self.pattern is not None:
            return f"a string matching {self.pattern}"
        if self.min_len or self.max_len is not None:
            return self._length()
        return "a string"

    def _json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.min_len:
            out["minLength"] = self.min_len
        if self.max_len is not None:
            out["maxLength"] = self.max_len
        return out


class Enum(Schema):
    """One of the given strings."""

    def __init__(self, *values: str, doc: str = "") -> None:
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError("Enum needs at least one string value")
        self.values = tuple(values)
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise self._expected(value, where)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def _json(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


class ListOf(Schema):
    """A list whose every item matches ``item``."""

    def __init__(self, item: Schema, *, min_items: int = 0, max_items: int | None = None,
                 doc: str = "") -> None:
        if min_items < 0 or (max_items is not None and max_items < min_items):
            raise ValueError(f"bad item bounds [{min_items}, {max_items}]")
        self.item = item
        self.min_items = min_items
        self.max_items = max_items
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, list):
            raise self._expected(value, where)
        n = len(value)
        if n < self.min_items or (self.max_items is not None and n > self.max_items):
            raise self._expected(value, where)
        for i, item in enumerate(value):
            self.item.check(item, f"{where}[{i}]")

    def describe(self) -> str:
        lo, hi = self.min_items, self.max_items
        if hi is not None:
            count = f"{lo} to {hi} items" if lo != hi else f"{lo} items"
        elif lo:
            count = f"at least {lo} item{'s' if lo != 1 else ''}"
        else:
            return "a list"
        return f"a list of {count}"

    def _json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out


class MapOf(Schema):
    """An object used as a mapping: any keys matching ``key``, every value matching ``value``."""

    def __init__(self, value: Schema, *, key: Str | None = None, doc: str = "") -> None:
        self.value = value
        self.key = key or Str()
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise self._expected(value, where)
        for k, v in value.items():
            self.key.check(k, f"{where} key {k!r}")
            self.value.check(v, f"{where}.{k}")

    def describe(self) -> str:
        return "an object"

    def _json(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.json_schema(),
                "propertyNames": self.key.json_schema()}


class Nullable(Schema):
    """``null`` or a value matching ``schema``."""

    def __init__(self, schema: Schema, *, doc: str = "") -> None:
        self.schema = schema
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        if value is None:
            return
        try:
            self.schema.check(value, where)
        except SchemaError as e:
            if str(e).startswith(f"{where}: expected "):  # wrong at this level: say null was fine too
                raise self._expected(value, where) from None
            raise

    def describe(self) -> str:
        return f"null or {self.schema.describe()}"

    def _json(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "null"}, self.schema.json_schema()]}


class AnyOf(Schema):
    """A value matching at least one of ``schemas`` (tried in order)."""

    def __init__(self, *schemas: Schema, doc: str = "") -> None:
        if len(schemas) < 2:
            raise ValueError("AnyOf needs at least two schemas")
        self.schemas = schemas
        self.doc = doc

    def check(self, value: object, where: str) -> None:
        errors = []
        for schema in self.schemas:
            try:
                schema.check(value, where)
                return
            except SchemaError as e:
                errors.append(str(e))
        # the alternative that got furthest (longest path) explains best what is wrong
        raise SchemaError(max(errors, key=lambda m: len(m.split(": ", 1)[0])))

    def describe(self) -> str:
        return " or ".join(s.describe() for s in self.schemas)

    def _json(self) -> dict[str, Any]:
        return {"anyOf": [s.json_schema() for s in self.schemas]}


class Opt:
    """Marks a :class:`Record` field as optional: ``Record(mode=Opt(Enum("a", "b")))``."""

    def __init__(self, schema: Schema) -> None:
        if not isinstance(schema, Schema):
            raise TypeError(f"Opt() wraps a Schema, got {schema!r}")
        self.schema = schema


class Record(Schema):
    """An object with named fields: required unless wrapped in :class:`Opt`; unknown fields rejected.

    Fields are keyword arguments; names that are not Python identifiers go in
    a positional mapping: ``Record({"from": Str()}, to=Str())``.
    """

    def __init__(self, fields: Mapping[str, Schema | Opt] | None = None, /, *, doc: str = "",
                 **kwargs: Schema | Opt) -> None:
        merged: dict[str, Schema | Opt] = dict(fields or {})
        for name, spec in kwargs.items():
            if name in merged:
                raise ValueError(f"field {name!r} given twice")
            merged[name] = spec
        self.fields: dict[str, Schema] = {}
        self.required: frozenset[str]
        required = set()
        for name, spec in merged.items():
            if isinstance(spec, Opt):
                self.fields[name] = spec.schema
            elif isinstance(spec, Schema):
                self.fields[name] = spec
                required.add(name)
            else:
                raise TypeError(f"field {name!r}: expected a Schema or Opt, got {spec!r}")
        self.required = frozenset(required)
        self.doc = doc

    def extend(self, fields: Mapping[str, Schema | Opt] | None = None, /, *, doc: str = "",
               **kwargs: Schema | Opt) -> Record:
        """A new record with this one's fields (optional ones stay optional) plus more."""
        base: dict[str, Schema | Opt] = {
            name: schema if name in self.required else Opt(schema) for name, schema in self.fields.items()}
        more = {**(fields or {}), **kwargs}
        clash = sorted(set(base) & set(more))
        if clash:
            raise ValueError(f"field {clash[0]!r} is already in the record")
        return Record({**base, **more}, doc=doc or self.doc)

    def check(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise self._expected(value, where)
        for name in self.fields:
            if name in value:
                self.fields[name].check(value[name], f"{where}.{name}")
            elif name in self.required:
                raise _fail(where, f"missing required field {name!r}")
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            known = ", ".join(self.fields) or "none"
            shown = repr(unknown[0]) if len(unknown) == 1 else ", ".join(repr(k) for k in unknown[:5])
            raise _fail(where, f"unknown field{'s' if len(unknown) > 1 else ''} {shown} (known: {known})")

    def describe(self) -> str:
        return "an object"

    def _json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {name: s.json_schema() for name, s in self.fields.items()},
            "required": sorted(self.required),
            "additionalProperties": False,
        }


def Hex(nbytes: int, *, doc: str = "") -> Str:
    """Lower-case hex digits for exactly ``nbytes`` bytes (``Hex(32)`` is a SHA-256 digest)."""
    return Str(pattern=f"[0-9a-f]{{{2 * nbytes}}}", doc=doc or f"{nbytes} bytes as {2 * nbytes} hex digits")


def AbsPath(*, doc: str = "") -> Str:
    """An absolute file path (large data moves as paths in the package cache, never inline)."""
    return Str(pattern=r"/[^\x00]*", max_len=4096, doc=doc or "an absolute path")
