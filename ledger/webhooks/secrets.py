"""Webhook secrets sealed at rest (docs/security.md#webhook-secrets-at-rest).

Signing needs each endpoint's secret itself, so it cannot be hashed like an API key; it is
sealed instead, with Fernet (AES-128-CBC and HMAC-SHA256, authenticated) under keys that
live in the environment (`TALLY_WEBHOOK_SECRET_KEYS`), never in the database. A dump or a
backup of the database alone reveals no secret. The first key seals; every listed key
opens, so a new key can be put first and the old one kept until `tally webhook-secrets
reseal` has sealed everything under the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# Every Fernet token starts with its version byte, 0x80, and a timestamp whose high bytes
# are zero: the base64 of that. The table's check constraint refuses anything else, so a
# secret written in clear is refused by PostgreSQL itself.
SEALED_PREFIX = "gAAAAA"


class SecretUnreadable(Exception):
    """A sealed secret that none of the configured keys opens."""


def new_key() -> str:
    """A fresh key for TALLY_WEBHOOK_SECRET_KEYS."""
    return Fernet.generate_key().decode()


class SecretBox:
    """Seals webhook secrets under the first key and opens them with any of the keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def seal(self, secret: str) -> str:
        """The secret encrypted and authenticated under the first key."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret inside `sealed`; SecretUnreadable when no key opens it."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("no key in TALLY_WEBHOOK_SECRET_KEYS opens it") from None

    def reseal(self, sealed: str) -> str:
        """`sealed` sealed again under the first key; SecretUnreadable when no key opens it."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("no key in TALLY_WEBHOOK_SECRET_KEYS opens it") from None
