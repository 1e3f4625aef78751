"""The whole-vehicle software version ``AA OS P S.X.Y<.Z><-T>``.

The FAW paper (section 3.2.1) names one version for the software state of
the whole car, in the format ``AA OS P S.X.Y<.Z><-T>``; its table 1, which
defines the fields, is not in the text we have, so the meanings below are
ours, chosen to fit the letters and the way OEMs number vehicle releases:

======= ========================================================================
field   meaning and syntax
======= ========================================================================
``AA``  vehicle model (platform) code: 2 characters, an upper-case letter then
        an upper-case letter or a digit (``E1``, ``HQ``)
``OS``  software platform code: the vehicle OS / E/E architecture generation
        the release is built on, 2 characters like ``AA`` (``OS``, ``V2``)
``P``   project phase: 1 upper-case letter or digit (by convention ``D``
        development, ``T`` trial / test fleet, ``P`` production)
``S``   major number: the software generation (new feature set)
``X``   minor number: a functional release of that generation
``Y``   patch number: a fix release
``Z``   optional build number
``T``   optional tag, 1 to 16 ASCII letters or digits (``RC1``, ``hotfix2``):
        a pre-release or test build *before* the untagged release
======= ========================================================================

Fields are separated by exactly one space; numbers are decimal, 0 to 99999,
with no sign and no leading zero (``1.02.3`` is refused, so every version has
exactly one spelling and ``str(parse(s)) == s``).

Ordering (total, consistent with ``==``): by model, platform, phase, then
major, minor, patch; a version without a build number comes before the same
version with one (``1.2.3`` < ``1.2.3.0``); a tagged version comes before the
untagged one (``1.2.3-RC1`` < ``1.2.3``), tags ordered by their runs of
digits (as numbers) and of letters (as ASCII), ``RC2`` < ``RC10``. Versions
of different models or platforms are ordered only so that sorting is
deterministic; use :meth:`VehicleVersion.same_line` to ask whether comparing
them means anything.

Why a hand-written scanner: no maintained library parses this OEM format, and
a regular expression cannot say *where* a string goes wrong and *what* was
expected there, which is what an engineer reading a baseline file needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from agent.errors import VehicleVersionError

__all__ = ["MAX_NUMBER", "MAX_TAG", "PATTERN", "VehicleVersion", "VehicleVersionError", "is_valid",
           "parse", "tag_key"]

MAX_NUMBER = 99_999
MAX_TAG = 16

#: the same grammar as an XSD / regular-expression pattern (kept in step with
#: ``configs/software-baseline.xsd``; the tests check that they agree)
PATTERN = (r"[A-Z][A-Z0-9] [A-Z][A-Z0-9] [A-Z0-9] "
           r"(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})"
           r"(\.(0|[1-9][0-9]{0,4}))?(-[A-Za-z0-9]{1,16})?")
_PATTERN_RE = re.compile(PATTERN)
_TAG_RUN = re.compile(r"[0-9]+|[A-Za-z]+")
_FIELD_PATTERNS = {
    "model": re.compile(r"[A-Z][A-Z0-9]"),
    "platform": re.compile(r"[A-Z][A-Z0-9]"),
    "phase": re.compile(r"[A-Z0-9]"),
    "tag": re.compile(r"[A-Za-z0-9]{1,16}"),
}


@total_ordering
@dataclass(frozen=True)
class VehicleVersion:
    """A parsed vehicle software version; ``str()`` gives its one canonical spelling."""

    model: str
    platform: str
    phase: str
    major: int
    minor: int
    patch: int
    build: int | None = None
    tag: str | None = None
    _key: tuple[object, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Constructed directly (not parsed): hold the fields to the same grammar.
        for name, pattern in _FIELD_PATTERNS.items():
            value = getattr(self, name)
            if value is None and name == "tag":
                continue
            if not isinstance(value, str) or pattern.fullmatch(value) is None:
                raise VehicleVersionError(repr(value), 0, f"a {name} matching {pattern.pattern}")
        for name in ("major", "minor", "patch", "build"):
            value = getattr(self, name)
            if value is None and name == "build":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NUMBER:
                raise VehicleVersionError(repr(value), 0, f"a {name} number 0..{MAX_NUMBER}")
        object.__setattr__(self, "_key", self._sort_key())

    def _render(self) -> str:
        out = f"{self.model} {self.platform} {self.phase} {self.major}.{self.minor}.{self.patch}"
        if self.build is not None:
            out += f".{self.build}"
        if self.tag is not None:
            out += f"-{self.tag}"
        return out

    def __str__(self) -> str:
        return self._render()

    def _sort_key(self) -> tuple[object, ...]:
        build = -1 if self.build is None else self.build
        # untagged sorts after every tag of the same number: (1,) > (0, ...)
        tag: tuple[object, ...] = (1,) if self.tag is None else (0, tag_key(self.tag), self.tag)
        return (self.model, self.platform, self.phase, self.major, self.minor, self.patch, build, tag)

    def sort_key(self) -> tuple[object, ...]:
        """The tuple the ordering compares (exposed for tests and for sorting)."""
        return self._key

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VehicleVersion):
            return NotImplemented
        return self._key < other._key  # type: ignore[operator]

    def same_line(self, other: VehicleVersion) -> bool:
        """True when both versions are of the same model and software platform."""
        return (self.model, self.platform) == (other.model, other.platform)


def tag_key(tag: str) -> tuple[tuple[int, int, str], ...]:
    """Runs of digits compare as numbers, runs of letters as ASCII; digits first."""
    return tuple((0, int(run), "") if run.isdigit() else (1, 0, run) for run in _TAG_RUN.findall(tag))


def parse(text: str, *, source: str | None = None, key: str | None = None) -> VehicleVersion:
    """Parse ``AA OS P S.X.Y<.Z><-T>``; raise :class:`VehicleVersionError` naming the position."""
    return _Scanner(text, source, key).version()


def is_valid(text: str) -> bool:
    return _PATTERN_RE.fullmatch(text) is not None


class _Scanner:
    def __init__(self, text: str, source: str | None, key: str | None) -> None:
        if not isinstance(text, str):
            raise VehicleVersionError(repr(text), 0, "a string")
        self.text = text
        self.pos = 0
        self.source = source
        self.key = key

    def fail(self, expected: str, position: int | None = None) -> VehicleVersionError:
        return VehicleVersionError(self.text, self.pos if position is None else position, expected,
                                   source=self.source, key=self.key)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def code(self, width: int, what: str) -> str:
        start = self.pos
        for i in range(width):
            c = self.peek()
            first = i == 0 and width == 2
            upper = "A" <= c <= "Z"
            ok = upper if first else (upper or c in "0123456789") and c != ""
            if not ok:
                kind = "an upper-case letter" if first else "an upper-case letter or a digit"
                raise self.fail(f"{kind} ({what}, {width} character{'s' if width > 1 else ''})")
            self.pos += 1
        return self.text[start:self.pos]

    def literal(self, char: str, expected: str) -> None:
        if self.peek() != char:
            raise self.fail(expected)
        self.pos += 1

    def number(self, what: str) -> int:
        start = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        digits = self.text[start:self.pos]
        if not digits:
            raise self.fail(f"a digit ({what})")
        if len(digits) > 1 and digits[0] == "0":
            raise self.fail(f"a {what} without a leading zero", start)
        value = int(digits)
        if value > MAX_NUMBER:
            raise self.fail(f"a {what} of at most {MAX_NUMBER}", start)
        return value

    def version(self) -> VehicleVersion:
        model = self.code(2, "vehicle model code AA")
        self.literal(" ", "one space after the vehicle model code")
        platform = self.code(2, "software platform code OS")
        self.literal(" ", "one space after the software platform code")
        phase = self.code(1, "project phase P")
        self.literal(" ", "one space after the project phase")
        major = self.number("major number S")
        self.literal(".", "'.' then the minor number X")
        minor = self.number("minor number X")
        self.literal(".", "'.' then the patch number Y")
        patch = self.number("patch number Y")
        build: int | None = None
        tag: str | None = None
        if self.peek() == ".":
            self.pos += 1
            build = self.number("build number Z")
        if self.peek() == "-":
            self.pos += 1
            start = self.pos
            while self.peek().isascii() and self.peek().isalnum():
                self.pos += 1
            if self.pos == start:
                raise self.fail("a letter or digit (tag T)")
            if self.pos - start > MAX_TAG:
                raise self.fail(f"a tag of at most {MAX_TAG} characters", start + MAX_TAG)
            tag = self.text[start:self.pos]
        if self.pos != len(self.text):
            raise self.fail("end of string" if tag is not None
                            else "end of string, '-' then a tag" if build is not None
                            else "end of string, '.' then a build number or '-' then a tag")
        return VehicleVersion(model, platform, phase, major, minor, patch, build, tag)
