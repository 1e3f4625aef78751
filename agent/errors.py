"""The project's one error root, split by who is at fault.

Every exception the stack raises on purpose derives from :class:`OtaError`.
Branches say whose fault it is, so callers (and the CLI's exit codes) can act
on the branch without knowing the leaf:

* :class:`TransportError`: the bus, the socket or the network failed to carry
  bytes (no answer, connection lost). Often worth a retry.
* :class:`ProtocolError`: the peer answered, but not as agreed (a negative
  response, a malformed frame, an unexpected message).
* :class:`VerificationError`: data failed a check of trust or integrity
  (hash, length, signature, CRC, version rule).
* :class:`ConfigurationError`: our own configuration or input files are wrong.
* :class:`VehicleStateError`: the vehicle is not in a state that allows the
  operation (preconditions, ECU in the wrong session).
"""

from __future__ import annotations


class OtaError(Exception):
    """Root of every error the OTA stack raises on purpose."""

    #: process exit code used by the CLI for this branch
    exit_code = 1


class TransportError(OtaError):
    """Bytes could not be carried: bus, socket or network failure."""

    exit_code = 3


class OtaTimeoutError(TransportError, TimeoutError):
    """A peer did not answer in time."""


class ProtocolError(OtaError):
    """The peer answered, but not as the protocol says it should."""

    exit_code = 4


class NegativeResponseError(ProtocolError):
    """An ECU answered a UDS request with a negative response code."""

    def __init__(self, message: str, *, service: int, nrc: int) -> None:
        super().__init__(message)
        self.service = service
        self.nrc = nrc


class SomeIpError(ProtocolError):
    """A SOME/IP or SOME/IP-SD message that is malformed, or a peer's SOME/IP error answer.

    ``return_code`` is the SOME/IP return code (``E_MALFORMED_MESSAGE`` = 0x09 for
    bytes that do not decode; the peer's code for an ERROR/RESPONSE it sent).
    """

    def __init__(self, message: str, *, return_code: int = 0x09) -> None:
        super().__init__(message)
        self.return_code = return_code


class VerificationError(OtaError):
    """Data failed an integrity or trust check."""

    exit_code = 5


class ConfigurationError(OtaError, ValueError):
    """Configuration or an input file is invalid.

    ``source`` names the file, ``key`` the dotted path inside it; both are
    shown in the message so a bad config stops with file, key and reason.
    """

    exit_code = 2

    def __init__(self, reason: str, *, source: str | None = None, key: str | None = None) -> None:
        self.reason = reason
        self.source = source
        self.key = key
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class VehicleStateError(OtaError):
    """The vehicle or an ECU is not in a state that allows the operation."""

    exit_code = 6


class VehicleVersionError(ConfigurationError):
    """A vehicle software version string that does not follow ``AA OS P S.X.Y<.Z><-T>``.

    ``position`` is the 0-based index of the offending character in ``text``
    (``len(text)`` when the string ends too early); ``expected`` says what the
    grammar wanted there.
    """

    def __init__(self, text: str, position: int, expected: str, *, source: str | None = None,
                 key: str | None = None) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        found = "end of string" if position >= len(text) else repr(text[position])
        super().__init__(
            f"invalid vehicle version {text!r}: at index {position} ({found}): expected {expected}",
            source=source, key=key)


class BaselineFileError(ConfigurationError):
    """A hardware or software baseline XML file that is unsafe, malformed or invalid.

    ``line`` (1-based, None when unknown) and ``element`` (local name, None when
    the fault is not inside an element) say where; ``reason`` says why.
    """

    def __init__(self, reason: str, *, source: str, line: int | None = None,
                 element: str | None = None) -> None:
        self.line = line
        self.element = element
        where = ", ".join(part for part in (
            f"line {line}" if line is not None else None,
            f"element <{element}>" if element else None) if part)
        super().__init__(reason, source=source, key=where or None)
