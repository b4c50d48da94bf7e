"""Personal data at rest: one pluggable cipher plus a keyed hash (blind index) for lookups."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from geoserver.config import SecuritySettings
from geoserver.security.cipher import Cipher, keyed_hash, make_cipher


@dataclass(frozen=True)
class PersonalDataCrypto:
    """Encrypts personal fields and computes their blind index, so full-value search works."""

    cipher: Cipher
    index_key: bytes

    def encrypt(self, value: str, *, context: str) -> bytes:
        """Encrypt ``value`` bound to ``context`` (e.g. ``person.document_number``)."""
        return self.cipher.encrypt(value, context=context)

    def decrypt(self, token: bytes, *, context: str) -> str:
        """Decrypt a token written by :meth:`encrypt` with the same context."""
        return self.cipher.decrypt(bytes(token), context=context)

    def blind_index(self, value: str) -> bytes:
        """Return the keyed hash of a normalised value (for equality search)."""
        return keyed_hash(value, self.index_key)


def parse_keys(spec: str) -> dict[str, str]:
    """Parse ``id:base64,id:base64`` into a dict, keeping order (the first is active)."""
    keys: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key_id, _, encoded = part.partition(":")
        if not key_id or not encoded:
            raise ValueError("GRIDGOV_DATA_KEYS must look like id:base64key[,id:base64key]")
        keys[key_id] = encoded
    if not keys:
        raise ValueError("GRIDGOV_DATA_KEYS holds no key")
    return keys


def crypto_from_settings(settings: SecuritySettings) -> PersonalDataCrypto:
    """Build the cipher and the blind-index key from settings."""
    keys = parse_keys(settings.data_keys)
    active = next(iter(keys))
    raw = base64.b64decode(keys[active])
    # AES-256 wants 32 bytes, SM4 16: derive the cipher key so either works with one setting.
    size = 16 if settings.cipher == "sm4" else 32
    derived = {
        k: base64.b64encode(
            hashlib.sha256(b"gridgov-cipher|" + base64.b64decode(v)).digest()[:size]
        ).decode()
        for k, v in keys.items()
    }
    index_key = hashlib.sha256(b"gridgov-index|" + raw).digest()
    return PersonalDataCrypto(make_cipher(settings.cipher, derived, active), index_key)
