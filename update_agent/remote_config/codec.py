"""How a configuration value travels: text an engineer types <-> the bytes of the DID / the signal.

Stateless (CONVENTIONS item 2). Four encodings:

=========  =======================================================  =====================
type       text                                                     bytes
=========  =======================================================  =====================
``bool``   ``on`` / ``off`` (also ``true``/``false``, ``1``/``0``)    ``size`` bytes, 1 / 0
``enum``   one of the names in ``values`` (name -> number)           the number, big endian
``uint``   a decimal or 0x number in ``minimum..maximum``            big endian
``hex``    exactly ``size`` bytes as hex                             as given
=========  =======================================================  =====================

A broadcast signal carries the same number (:meth:`Encoding.to_int`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.errors import ConfigurationError

TYPES = ("bool", "enum", "uint", "hex")
_TRUE = ("on", "true", "1", "yes")
_FALSE = ("off", "false", "0", "no")


class ConfigValueError(ConfigurationError):
    """A value that the item's encoding cannot carry."""


@dataclass(frozen=True)
class Encoding:
    type: str
    size: int = 1
    #: enum: name -> number
    values: Mapping[str, int] = field(default_factory=dict)
    minimum: int = 0
    maximum: int | None = None

    @property
    def limit(self) -> int:
        """The largest number ``size`` bytes hold (and ``maximum`` if lower)."""
        top = (1 << (8 * self.size)) - 1
        return top if self.maximum is None else min(top, self.maximum)

    def encode(self, text: str) -> bytes:
        """The bytes for ``text``; ConfigValueError naming what is accepted."""
        word = text.strip()
        if self.type == "hex":
            try:
                data = bytes.fromhex(word.removeprefix("0x"))
            except ValueError:
                raise ConfigValueError(f"{text!r} is not hex") from None
            if len(data) != self.size:
                raise ConfigValueError(f"{text!r} is {len(data)} bytes, the item takes {self.size}")
            return data
        return self.from_int(self.parse(word))

    def parse(self, word: str) -> int:
        low = word.lower()
        if self.type == "bool":
            if low in _TRUE:
                return 1
            if low in _FALSE:
                return 0
            raise ConfigValueError(f"{word!r} is not on/off")
        if self.type == "enum":
            if word in self.values:
                return self.values[word]
            raise ConfigValueError(f"{word!r} is not one of {', '.join(self.values)}")
        try:
            number = int(word, 0)
        except ValueError:
            raise ConfigValueError(f"{word!r} is not a number") from None
        if not self.minimum <= number <= self.limit:
            raise ConfigValueError(f"{number} is outside {self.minimum}..{self.limit}")
        return number

    def from_int(self, number: int) -> bytes:
        if not 0 <= number < 1 << (8 * self.size):
            raise ConfigValueError(f"{number} does not fit in {self.size} byte(s)")
        return number.to_bytes(self.size, "big")

    def to_int(self, data: bytes) -> int:
        return int.from_bytes(data, "big")

    def decode(self, data: bytes) -> str:
        """The text for stored bytes; a value the encoding does not name is shown as hex."""
        if self.type == "hex" or len(data) != self.size:
            return data.hex()
        number = self.to_int(data)
        if self.type == "bool":
            return {0: "off", 1: "on"}.get(number, f"0x{data.hex()}")
        if self.type == "enum":
            names = {v: k for k, v in self.values.items()}
            return names.get(number, f"0x{data.hex()}")
        return str(number)

    def describe(self) -> str:
        if self.type == "bool":
            return "on|off"
        if self.type == "enum":
            return "|".join(self.values)
        if self.type == "uint":
            return f"{self.minimum}..{self.limit}"
        return f"{self.size} bytes hex"
