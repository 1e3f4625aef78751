"""SecurityAccess (0x27) seed / key algorithms.

An algorithm is any callable ``(seed: bytes, level: int, params: dict) -> bytes``
named in the ECU config as ``module:function``. OEM algorithms live in the
OEM's own module; these two serve the bench and document the signature. The
tester and the simulated bootloader call the same function, so a bench ECU
accepts exactly the key the configured algorithm produces.
"""

from __future__ import annotations

from typing import Any


def xor_key(seed: bytes, level: int, params: dict[str, Any]) -> bytes:
    """Key = seed XOR a repeating mask (``params.mask``, hex), rotated by the level."""
    mask = bytes.fromhex(str(params.get("mask", "A5C3F00F")))
    shifted = mask[level % len(mask):] + mask[:level % len(mask)]
    return bytes(b ^ shifted[i % len(shifted)] for i, b in enumerate(seed))


def aes_cmac_key(seed: bytes, level: int, params: dict[str, Any]) -> bytes:
    """Key = AES-128-CMAC(secret, level || seed), truncated to ``params.key_length`` (default 16).

    ``params.secret`` is the 16-byte shared secret as hex, as a supplier's
    bootloader would keep it per security level.
    """
    # imported here: every daemon that loads the vehicle config resolves the configured algorithm,
    # and cryptography costs each of them ~6 MiB of RSS when the ECUs use xor_key
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    secret = bytes.fromhex(str(params["secret"]))
    mac = cmac.CMAC(algorithms.AES(secret))
    mac.update(bytes([level]) + seed)
    return mac.finalize()[: int(params.get("key_length", 16))]
