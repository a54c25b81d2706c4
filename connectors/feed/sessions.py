"""Signed session cookies and CSRF tokens (HMAC-SHA256 with the feed secret).

Sessions are stateless but for log-outs: a logged-out session's nonce is kept until the session
would have expired, so a copied cookie stops working at log-out (in this feed process; with
several replicas, each one forgets only the log-outs it served, so keep sessions short).
"""

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
        self._revoked: dict[str, int] = {}  # nonce -> when its session would expire (epoch seconds)

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + self._ttl)
        payload = f"{user}|{expires}|{secrets.token_hex(8)}"
        return base64.urlsafe_b64encode(payload.encode()).decode() + "." + self._mac(payload)

    def _check(self, token: str, now: float | None) -> tuple[str, str, int] | None:
        try:
            encoded, mac = token.rsplit(".", 1)
            payload = base64.urlsafe_b64decode(encoded.encode()).decode()
            user, expires, nonce = payload.split("|")
            until = int(expires)
        except (ValueError, UnicodeDecodeError):
            return None
        if not _same(mac, self._mac(payload)) or until < (now or time.time()):
            return None
        return user, nonce, until

    def verify(self, token: str, now: float | None = None) -> tuple[str, str] | None:
        """(user name, session nonce) of a valid, unexpired token that was not logged out."""
        found = self._check(token, now)
        if found is None or found[1] in self._revoked:
            return None
        return found[0], found[1]

    def revoke(self, token: str, now: float | None = None) -> None:
        """Log-out: the token is refused from now on (it is remembered until it expires anyway)."""
        at = now or time.time()
        self._revoked = {n: until for n, until in self._revoked.items() if until >= at}
        found = self._check(token, now)
        if found is not None:
            self._revoked[found[1]] = found[2]

    def csrf(self, nonce: str) -> str:
        return self._mac(f"csrf|{nonce}")[:40]

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        return token is not None and _same(self.csrf(nonce), token)


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of two texts, whatever characters a client put in its one (``compare_digest``
    refuses non-ASCII text with a TypeError, which would be an error 500)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))
