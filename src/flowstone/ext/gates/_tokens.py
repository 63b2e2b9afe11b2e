"""Gate tokens: HMAC-SHA256 over the gate id and its deadline, with secrets that rotate.

A token reads ``fsg1.<gate id>.<deadline>.<nonce>.<mac>``: the deadline is a Unix time in
seconds (``-`` for a gate that never expires), the nonce 16 random bytes in hex, and the
mac the HMAC-SHA256, under the first secret, of the version, gate id, deadline and nonce,
in URL-safe base64. Verifying tries every secret (the first signs, all verify) and
compares in constant time. A store keeps only ``token_hash(token)``, the SHA-256 of the
whole token, so a leaked gates table resolves nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from datetime import UTC, datetime

from flowstone import ConfigurationError

from ._errors import InvalidTokenError

__all__ = ["ENV_SECRET", "TokenSigner", "new_gate_id", "token_hash"]

#: The environment variable holding the gate secret (several: separated by commas).
ENV_SECRET = "FLOWSTONE_GATE_SECRET"
#: The shortest secret accepted, in bytes.
MIN_SECRET_BYTES = 16

_VERSION = "fsg1"
_GATE_ID = re.compile(r"g-[0-9a-f]{32}")
_DEADLINE = re.compile(r"-|[0-9]{1,12}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")


def new_gate_id() -> str:
    """A new random gate id: ``g-`` and 32 hex digits."""
    return f"g-{secrets.token_hex(16)}"


def token_hash(token: str) -> str:
    """The SHA-256 of a token, in hex: what a store keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _as_bytes(secret: str | bytes, origin: str) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(raw, bytes) or len(raw) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"a gate secret ({origin}) must be at least {MIN_SECRET_BYTES} bytes long"
        )
    return raw


def secrets_from(
    secret: str | bytes | list[str | bytes] | tuple[str | bytes, ...] | None,
) -> list[bytes] | None:
    """The secrets given to ``install(secret=...)``, else those of ``FLOWSTONE_GATE_SECRET``.

    :return: ``None`` when neither is set
    :raises ConfigurationError: an empty list, or a secret shorter than 16 bytes
    """
    if secret is not None:
        given = [secret] if isinstance(secret, str | bytes) else list(secret)
        if not given:
            raise ConfigurationError("install(secret=...) got an empty list of gate secrets")
        return [_as_bytes(s, "install(secret=...)") for s in given]
    env = os.environ.get(ENV_SECRET, "")
    parts = [p.strip() for p in env.split(",") if p.strip()]
    if not parts:
        return None
    return [_as_bytes(p, ENV_SECRET) for p in parts]


def _deadline_text(expires_at: datetime | None) -> str:
    return "-" if expires_at is None else str(int(expires_at.timestamp()))


class TokenSigner:
    """Signs tokens with the first secret and verifies them with any.

    :param keys: the secrets, newest first
    """

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("a token signer needs at least one secret")
        self._keys = list(keys)

    def __repr__(self) -> str:
        return f"TokenSigner({len(self._keys)} secrets)"

    @staticmethod
    def _message(gate_id: str, deadline: str, nonce: str) -> bytes:
        return f"{_VERSION}\n{gate_id}\n{deadline}\n{nonce}".encode()

    @staticmethod
    def _mac(key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, hashlib.sha256).digest()

    def sign(self, gate_id: str, expires_at: datetime | None) -> str:
        """A new token for ``gate_id`` with its deadline (whole seconds)."""
        deadline = _deadline_text(expires_at)
        nonce = secrets.token_hex(16)
        mac = self._mac(self._keys[0], self._message(gate_id, deadline, nonce))
        encoded = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return f"{_VERSION}.{gate_id}.{deadline}.{nonce}.{encoded}"

    def verify(self, token: object) -> tuple[str, datetime | None]:
        """Check a token's form and signature.

        :return: the gate id and deadline it was signed for
        :raises InvalidTokenError: it is not a token this signer's secrets made
        """
        if not isinstance(token, str) or len(token) > 256:
            raise InvalidTokenError("not a gate token")
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != _VERSION:
            raise InvalidTokenError("not a gate token")
        _, gate_id, deadline, nonce, mac_text = parts
        if not (
            _GATE_ID.fullmatch(gate_id)
            and _DEADLINE.fullmatch(deadline)
            and _NONCE.fullmatch(nonce)
            and _MAC.fullmatch(mac_text)
        ):
            raise InvalidTokenError("not a gate token")
        try:
            mac = base64.urlsafe_b64decode(mac_text + "=")
        except (binascii.Error, ValueError):
            raise InvalidTokenError("not a gate token") from None
        # Only the canonical encoding counts (43 characters can spell 32 bytes two ways).
        if base64.urlsafe_b64encode(mac).rstrip(b"=").decode() != mac_text:
            raise InvalidTokenError("not a gate token")
        message = self._message(gate_id, deadline, nonce)
        matched = False
        for key in self._keys:  # every key, so timing does not tell which one matched
            matched |= hmac.compare_digest(self._mac(key, message), mac)
        if not matched:
            raise InvalidTokenError("the token's signature does not verify")
        expires = None if deadline == "-" else datetime.fromtimestamp(int(deadline), UTC)
        return gate_id, expires
