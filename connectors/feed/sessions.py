"""Signed session cookies and CSRF tokens (HMAC-SHA256 with the feed secret); no server-side state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time


class Sessions:
    def __init__(self, key: bytes, hours: float) -> None:
        self._key = key
        self._ttl = int(hours * 3600)

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + self._ttl)
        payload = f"{user}|{expires}|{secrets.token_hex(8)}"
        return base64.urlsafe_b64encode(payload.encode()).decode() + "." + self._mac(payload)

    def verify(self, token: str, now: float | None = None) -> tuple[str, str] | None:
        """(user name, session nonce) of a valid, unexpired token."""
        try:
            encoded, mac = token.rsplit(".", 1)
            payload = base64.urlsafe_b64decode(encoded.encode()).decode()
            user, expires, nonce = payload.split("|")
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)) or int(expires) < (now or time.time()):
            return None
        return user, nonce

    def csrf(self, nonce: str) -> str:
        return self._mac(f"csrf|{nonce}")[:40]

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf(nonce), token)
