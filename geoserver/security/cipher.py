"""One pluggable cipher for personal data at rest, and keyed hashes for blind indexes.

Both algorithms are authenticated (GCM): AES-256-GCM by default, SM4-GCM (RFC 8998, the
mode China's TLS suites use) for deployments that must pass 密评 with 国密 algorithms.
SM4-GCM is used directly because the installed OpenSSL provides it; no CBC + HMAC fallback
is built, since an OpenSSL without SM4-GCM usually lacks SM4 altogether.

Token layout (self-describing, so keys can rotate and old rows stay readable)::

    algorithm id (1 byte) | key id length (1) | key id (ASCII) | nonce (12) | ciphertext+tag (16)

The header and the caller's ``context`` (e.g. ``"person.id_number"``) are bound as associated
data: a token copied into another column, or with its header edited, fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher as _PrimitiveCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
DEFAULT_KEY_ID = "default"
_MAX_KEY_ID = 32
_MIN_HASH_KEY = 16


class DecryptionFailed(Exception):  # noqa: N818 - names the event, like cryptography's InvalidTag
    """A token that cannot be decrypted: tampered, wrong context, unknown key or garbage."""


class Cipher(Protocol):
    """Encrypts personal data to self-describing tokens bound to a context."""

    @property
    def name(self) -> str:
        """Return the algorithm name, e.g. 'aes-256-gcm'."""
        ...

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """Encrypt plaintext to a token bound to context."""
        ...

    def decrypt(self, token: bytes, *, context: str) -> str:
        """Decrypt a token made for the same context, or raise DecryptionFailed."""
        ...


@dataclass(frozen=True)
class Keyring:
    """Keys by id; the active one encrypts, any of them decrypts (key rotation)."""

    keys: Mapping[str, bytes]
    active: str

    def __post_init__(self) -> None:
        for key_id in self.keys:
            if not (0 < len(key_id) <= _MAX_KEY_ID and key_id.isascii() and key_id.isprintable()):
                raise ValueError(f"key id {key_id!r} must be 1–{_MAX_KEY_ID} printable ASCII chars")
        if self.active not in self.keys:
            raise ValueError(f"active key id {self.active!r} is not in the keyring")
        # A read-only copy: the caller's dict changing later must not swap keys under us.
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    def __repr__(self) -> str:
        # Never print key material, even in a traceback.
        return f"Keyring(ids={sorted(self.keys)!r}, active={self.active!r})"

    def active_key(self) -> tuple[str, bytes]:
        """Return the id and bytes of the key that encrypts."""
        return self.active, self.keys[self.active]

    def get(self, key_id: str) -> bytes | None:
        """Return the key with this id, or None."""
        return self.keys.get(key_id)


class _GcmCipher:
    """Token framing and key handling shared by the GCM ciphers."""

    algorithm_id: ClassVar[int]
    name: ClassVar[str]
    key_size: ClassVar[int]

    def __init__(self, key: bytes | Keyring) -> None:
        self._keyring = (
            key if isinstance(key, Keyring) else Keyring({DEFAULT_KEY_ID: key}, DEFAULT_KEY_ID)
        )
        for key_id, material in self._keyring.keys.items():
            if len(material) != self.key_size:
                raise ValueError(f"{self.name} key {key_id!r} must be {self.key_size} bytes")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._keyring!r})"

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """Encrypt plaintext to a token bound to context, with the active key."""
        key_id, key = self._keyring.active_key()
        encoded_id = key_id.encode("ascii")
        header = bytes((self.algorithm_id, len(encoded_id))) + encoded_id
        nonce = os.urandom(NONCE_SIZE)  # random 96-bit nonces: fine far below 2**32 per key
        sealed = self._seal(key, nonce, plaintext.encode("utf-8"), header + context.encode())
        return header + nonce + sealed

    def decrypt(self, token: bytes, *, context: str) -> str:
        """Decrypt a token made for the same context, or raise DecryptionFailed."""
        header, key, nonce, sealed = self._parse(token)
        try:
            plain = self._open(key, nonce, sealed, header + context.encode())
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise DecryptionFailed("token does not authenticate for this context") from None

    def _parse(self, token: object) -> tuple[bytes, bytes, bytes, bytes]:
        """Split a token into header, key, nonce and sealed bytes, checking each part."""
        # psycopg2 returns bytea as memoryview, so accept any bytes-like object.
        if not isinstance(token, bytes | bytearray | memoryview):
            raise DecryptionFailed("token must be bytes")
        data = bytes(token)
        if len(data) < 2 or data[0] != self.algorithm_id:
            raise DecryptionFailed(f"token was not made by {self.name}")
        id_end = 2 + data[1]
        if len(data) < id_end + NONCE_SIZE + TAG_SIZE:
            raise DecryptionFailed("token is truncated")
        key = self._keyring.get(data[2:id_end].decode("ascii", errors="replace"))
        if key is None:
            raise DecryptionFailed("token names a key that is not in the keyring")
        nonce = data[id_end : id_end + NONCE_SIZE]
        return data[:id_end], key, nonce, data[id_end + NONCE_SIZE :]

    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext followed by the 16-byte tag."""
        raise NotImplementedError

    def _open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Return the plaintext or raise InvalidTag."""
        raise NotImplementedError


class AesGcmCipher(_GcmCipher):
    """AES-256-GCM, the default cipher."""

    algorithm_id = 1
    name = "aes-256-gcm"
    key_size = 32

    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext followed by the tag."""
        return AESGCM(key).encrypt(nonce, plaintext, aad)

    def _open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Return the plaintext or raise InvalidTag."""
        return AESGCM(key).decrypt(nonce, sealed, aad)


class Sm4Cipher(_GcmCipher):
    """SM4-GCM (GB/T 32907 block cipher in GCM mode, as in RFC 8998), for 密评 deployments."""

    algorithm_id = 2
    name = "sm4-gcm"
    key_size = 16

    def __init__(self, key: bytes | Keyring) -> None:
        super().__init__(key)
        try:
            # Fail at start-up, not on the first write, when OpenSSL lacks SM4-GCM.
            self._seal(bytes(self.key_size), bytes(NONCE_SIZE), b"", b"")
        except UnsupportedAlgorithm as exc:
            raise RuntimeError("this OpenSSL build does not provide SM4-GCM") from exc

    def _seal(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext followed by the tag."""
        encryptor = _PrimitiveCipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag

    def _open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Return the plaintext or raise InvalidTag."""
        ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
        decryptor = _PrimitiveCipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(ciphertext) + decryptor.finalize()


_CIPHERS: dict[str, type[_GcmCipher]] = {
    "aes-gcm": AesGcmCipher,
    "aes-256-gcm": AesGcmCipher,
    "sm4": Sm4Cipher,
    "sm4-gcm": Sm4Cipher,
}


def _cipher_class(algorithm: str) -> type[_GcmCipher]:
    """Return the cipher class for an algorithm name from settings."""
    try:
        return _CIPHERS[algorithm.lower()]
    except KeyError:
        raise ValueError(f"unknown cipher {algorithm!r}; use one of {sorted(_CIPHERS)}") from None


def _decode_key(key_id: str, encoded: str) -> bytes:
    """Decode one base64 key from settings, naming the key id (never the key) on error."""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError(f"key {key_id!r} is not valid base64") from None


def make_cipher(algorithm: str, keys: Mapping[str, str], active: str) -> Cipher:
    """Build the configured cipher from base64 keys by id, encrypting with `active`."""
    decoded = {key_id: _decode_key(key_id, encoded) for key_id, encoded in keys.items()}
    return _cipher_class(algorithm)(Keyring(decoded, active))


def generate_key(algorithm: str = "aes-gcm") -> str:
    """Return a new random key for the algorithm, base64-encoded for settings."""
    return base64.b64encode(os.urandom(_cipher_class(algorithm).key_size)).decode("ascii")


def keyed_hash(value: str, key: bytes, *, algorithm: str = "sha256") -> bytes:
    """Return HMAC(key, value) for a blind index: equal inputs match, the value stays hidden.

    Normalise the value first (``normalize_document``) so that '…123x' and '…123X' match,
    and use a key of its own, not an encryption key. ``algorithm`` is "sha256" or "sm3".
    """
    if len(key) < _MIN_HASH_KEY:
        raise ValueError(f"blind-index key must be at least {_MIN_HASH_KEY} bytes")
    digest = {"sha256": hashes.SHA256, "sm3": hashes.SM3}.get(algorithm.lower())
    if digest is None:
        raise ValueError(f"unknown keyed-hash algorithm {algorithm!r}; use sha256 or sm3")
    mac = hmac.HMAC(key, digest())
    mac.update(value.encode("utf-8"))
    return mac.finalize()
