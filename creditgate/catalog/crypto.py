"""Provider API keys at rest: Fernet under CREDITGATE_ENCRYPTION_KEYS (newest first)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from creditgate.core.errors import ProviderUnavailable


class KeyDecryptionError(ProviderUnavailable):
    """A stored key could not be decrypted with any configured encryption key.

    To a caller the provider is unusable until an operator fixes CREDITGATE_ENCRYPTION_KEYS or
    enters the key again, hence a ProviderUnavailable (rendered 503, never with key material)."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in settings.CREDITGATE_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token or any key material in the message.
        raise KeyDecryptionError("A stored API key cannot be decrypted with the configured encryption keys.") from None


def rotate(token: str) -> str:
    """Re-encrypt a token under the newest key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise KeyDecryptionError("A stored API key cannot be decrypted with the configured encryption keys.") from None


def mask(plaintext: str) -> str:
    """`sk-proj-abc…9f2c` -> `sk-…9f2c`: the vendor prefix and the last four characters."""
    if not plaintext:
        return ""
    prefix = plaintext.split("-", 1)[0] + "-" if "-" in plaintext[:8] else ""
    tail = plaintext[-4:] if len(plaintext) >= 12 else ""
    return f"{prefix}…{tail}"
