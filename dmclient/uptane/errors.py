"""What can go wrong when the vehicle verifies update metadata, one class per attack.

Every class is a :class:`~agent.errors.VerificationError` (exit code 5) and carries
``attack``: the short name of the Uptane threat it detected, which goes into the next
vehicle version manifest as that ECU's attack indicator. python-tuf's exceptions are
mapped onto these by :func:`dmclient.uptane.tuf_errors.map_tuf_error`.

=================================  ==================================================
class                              raised when
=================================  ==================================================
:class:`RollbackError`             metadata version or an image release counter goes
                                   down, or the target vehicle version is older
:class:`FreezeError`               metadata is expired at the reference time
:class:`MixAndMatchError`          snapshot / targets disagree with what the
                                   timestamp / snapshot says about them
:class:`ArbitrarySoftwareError`    Director and Image repository disagree on a
                                   target (length, hashes, release counter), or a
                                   downloaded file does not hash as signed
:class:`EndlessDataError`          more bytes arrive than the signed length
:class:`PartialBundleError`        a Director target (or its baseline, delta patch,
                                   ciphertext) is missing from the Image repository
:class:`WrongHardwareError`        hardware ids disagree (Director, Image, the ECU)
:class:`UnknownEcuError`           a target names an ECU this vehicle does not have
:class:`SignatureError`            bad, missing or too few signatures
:class:`UntrustedRootError`        a new root is not signed by the trusted root's keys
:class:`InvalidMetadataError`      malformed metadata or target ``custom`` fields
:class:`BaselineMismatchError`     the signed baseline XML does not describe the
                                   assigned images
=================================  ==================================================
"""

from __future__ import annotations

from agent.errors import VerificationError


class UptaneVerificationError(VerificationError):
    """A metadata check failed; ``repository`` is ``director`` / ``image`` / None."""

    attack = "invalid-metadata"

    def __init__(self, message: str, *, repository: str | None = None, ecu: str | None = None) -> None:
        super().__init__(message)
        self.repository = repository
        self.ecu = ecu


class RollbackError(UptaneVerificationError):
    attack = "rollback"


class FreezeError(UptaneVerificationError):
    attack = "freeze"


class MixAndMatchError(UptaneVerificationError):
    attack = "mix-and-match"


class ArbitrarySoftwareError(UptaneVerificationError):
    attack = "arbitrary-software"


class EndlessDataError(UptaneVerificationError):
    attack = "endless-data"


class PartialBundleError(UptaneVerificationError):
    attack = "partial-bundle"


class WrongHardwareError(UptaneVerificationError):
    attack = "wrong-hardware"


class UnknownEcuError(UptaneVerificationError):
    attack = "unknown-ecu"


class SignatureError(UptaneVerificationError):
    attack = "bad-signature"


class UntrustedRootError(SignatureError):
    attack = "untrusted-root"


class InvalidMetadataError(UptaneVerificationError):
    attack = "invalid-metadata"


class BaselineMismatchError(UptaneVerificationError):
    attack = "baseline-mismatch"
