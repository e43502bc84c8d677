"""Encryption at rest: AES-256-GCM, for the JSON-file backend's files and, as a setting,
for memory content and metadata on the SQL backends (docs/backends.md#encryption).

A key is 32 random bytes written as URL-safe base64 (the form `memvault encryption keygen`
prints, and a Fernet key has). An encrypted file is

    b"MVAE1\\n" + key id (8 bytes: SHA-256 of the key) + nonce (12 bytes) + ciphertext+tag

with the file's path inside the data directory as associated data, so a file copied over
another one does not decrypt. Files without the header are read as plain JSON (a seed 002
directory before its first write); every write encrypts. A file under a key memvault was
not given, or one that was changed, stops the store from opening with a message saying
which; nothing is written.

On the SQL backends the same sealed form holds one memory's content and metadata (in
`memories.content_z`, with the memory's id as associated data) and history snapshots; the
exact-duplicate hash of such a row is keyed (`Cipher.keyed_hash`), so it tells nothing to a
reader without the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memvault.errors import ConfigurationError

if TYPE_CHECKING:
    from memvault.config import Settings

MAGIC = b"MVAE1\n"
_ID, _NONCE = 8, 12


def new_key() -> str:
    """A fresh key, as URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_key(text: str, what: str = "encryption key") -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"the {what} is not URL-safe base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"the {what} must be 32 bytes (base64 of 32 random bytes)")
    return key


def read_key_file(path: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the key file {path}: {exc}") from None
    return parse_key(text, f"key in {path}")


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_ID]


def _hash_key(key: bytes) -> bytes:
    """The HMAC key of content hashes, derived from (never equal to) the encryption key."""
    return hashlib.sha256(b"memvault content hash\x00" + key).digest()


def cipher_for(settings: Settings) -> Cipher | None:
    """The cipher of the configured key and old keys (None when no key is configured)."""
    key = None
    if settings.encryption_key:
        key = parse_key(settings.encryption_key)
    elif settings.encryption_key_file:
        key = read_key_file(settings.encryption_key_file)
    old = [
        parse_key(k, "old encryption key")
        for k in settings.encryption_old_keys.split(",")
        if k.strip()
    ]
    if key is None:
        return Cipher(old[0], old) if old else None
    return Cipher(key, old)


class Cipher:
    """Encrypts with `key`; decrypts with it or any of `old` (during a rotation)."""

    def __init__(self, key: bytes, old: Sequence[bytes] = ()) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._raw = [*old, key]
        self._current = (key_id(key), AESGCM(key))
        self._keys = {key_id(k): AESGCM(k) for k in (*old, key)}
        self._hash_keys = {key_id(k): _hash_key(k) for k in (*old, key)}

    def with_current(self, key: bytes) -> Cipher:
        """A cipher that encrypts with `key` and still reads every key of this one."""
        return Cipher(key, [k for k in self._raw if k != key])

    @property
    def key_id(self) -> str:
        """The current key's id, in hex (what `memories.enc_key` holds)."""
        return self._current[0].hex()

    def key_ids(self) -> list[str]:
        """Every key this cipher reads, current first, in hex."""
        current = self._current[0]
        return [current.hex()] + [k.hex() for k in self._keys if k != current]

    def keyed_hash(self, digest: str, kid: str | None = None) -> str:
        """HMAC-SHA256 of a content digest under the current key (or the key `kid`)."""
        key = self._hash_keys[self._current[0] if kid is None else bytes.fromhex(kid)]
        return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, data: bytes, where: str) -> bytes:
        kid, aead = self._current
        nonce = os.urandom(_NONCE)
        return MAGIC + kid + nonce + aead.encrypt(nonce, data, where.encode())

    def decrypt(self, blob: bytes, where: str) -> bytes:
        return decrypt(blob, where, self)

    def aead_for(self, kid: bytes) -> Any:
        """The AES-GCM of the key with this id, or None."""
        return self._keys.get(kid)


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def sealed_key_id(blob: bytes) -> str:
    """The hex id of the key that sealed `blob` ("" for a plain blob)."""
    if not blob.startswith(MAGIC):
        return ""
    return blob[len(MAGIC) : len(MAGIC) + _ID].hex()


def decrypt(blob: bytes, where: str, cipher: Cipher | None) -> bytes:
    """The plain bytes of a file's contents (plain files pass through)."""
    if not blob.startswith(MAGIC):
        return blob
    from cryptography.exceptions import InvalidTag

    head = len(MAGIC)
    kid = blob[head : head + _ID]
    if cipher is None:
        raise ConfigurationError(
            f"{where} is encrypted: set MEMVAULT_ENCRYPTION_KEY or MEMVAULT_ENCRYPTION_KEY_FILE"
        )
    aead = cipher.aead_for(kid)
    if aead is None:
        raise ConfigurationError(
            f"{where} is encrypted with a key memvault was not given (key id {kid.hex()}); "
            "set it as the key, or among MEMVAULT_ENCRYPTION_OLD_KEYS"
        )
    nonce = blob[head + _ID : head + _ID + _NONCE]
    try:
        return bytes(aead.decrypt(nonce, blob[head + _ID + _NONCE :], where.encode()))
    except InvalidTag:
        raise ConfigurationError(
            f"{where} does not decrypt with its key: it was changed, or moved from elsewhere"
        ) from None
