"""Short-lived tokens, in memory: database credentials and OAuth access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lakebase_memory.local_lakebase.state import rfc3339


@dataclass(frozen=True)
class IssuedToken:
    token: str
    identity: str
    expires_at: float  # seconds since the epoch

    @property
    def expiration_time(self) -> str:
        """RFC 3339, as the credential APIs return it."""
        return rfc3339(datetime.fromtimestamp(self.expires_at, UTC))

    def valid_at(self, moment: float) -> bool:
        return moment < self.expires_at


class TokenStore:
    """Issues JWT-shaped tokens and remembers them until they expire.

    Real Lakebase credentials and OAuth access tokens are JWTs; these have the same shape (and
    an `exp` claim a client may read) but are checked by lookup, so nothing survives a restart.
    """

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(self, identity: str, ttl: float, audience: str) -> IssuedToken:
        now = time.time()
        expires_at = now + ttl
        claims = {
            "iss": self.issuer,
            "sub": identity,
            "aud": audience,
            "iat": int(now),
            "exp": int(expires_at),
            "jti": str(uuid.uuid4()),
        }
        issued = IssuedToken(self._sign(claims), identity, expires_at)
        with self._lock:
            self._prune(now)
            self._tokens[issued.token] = issued
        return issued

    def identity_of(self, token: str) -> str | None:
        """The identity a still valid token was issued to, or None."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or not issued.valid_at(time.time()):
            return None
        return issued.identity

    def _sign(self, claims: dict[str, object]) -> str:
        header = _b64({"alg": "HS256", "typ": "JWT"})
        payload = _b64(claims)
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def _prune(self, now: float) -> None:
        # Expired entries are useless; dropping them keeps a long-running stand-in small.
        for token in [t for t, issued in self._tokens.items() if not issued.valid_at(now)]:
            del self._tokens[token]


def _b64(value: dict[str, object]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
