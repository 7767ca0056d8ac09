"""Sign-in, sessions and CSRF for the dashboard.

The session is a signed, expiring cookie: itsdangerous's URLSafeTimedSerializer
(an HMAC over the JSON and a timestamp, checked with `max_age`). The cookie
holds nothing secret (who signed in and a random nonce), so signing is enough
and nothing is kept on the server; the signature is bound to the user name and
password too, so changing the password ends every session; aiohttp-session's encrypted cookie would add
a middleware, cryptography's Fernet and a storage layer for no gain here.

Every visitor gets a session (signed in or not): its nonce keys the CSRF token
that every mutating form carries (`csrf_token`), so the sign-in form is covered
too. Passwords are compared in constant time (`hmac.compare_digest`).

Called by `corral.dashboard.routes` and `corral.dashboard.app`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "corral_dashboard"
MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    """Who this browser is: `user` (None: not signed in) and its CSRF nonce."""

    nonce: str
    user: str | None = None

    @classmethod
    def fresh(cls, user: str | None = None) -> Session:
        return cls(nonce=secrets.token_urlsafe(24), user=user)


@dataclass(frozen=True, slots=True)
class Auth:
    """The dashboard's sign-in settings: the one user name, its password (None:
    no password configured, the dashboard is read-only), the key sessions are
    signed with, and whether cookies are marked Secure (behind https)."""

    secret_key: str
    user: str = "admin"
    password: str | None = None
    secure_cookies: bool = False
    max_age_s: int = MAX_AGE_S

    @property
    def actions_enabled(self) -> bool:
        return bool(self.password)

    def _serializer(self) -> URLSafeTimedSerializer:
        # The salt carries an HMAC of the user name and password: changing
        # either ends every session signed before (a leaked password stops
        # working once replaced), without storing anything on the server.
        sign_in = f"{self.user}\0{self.password or ''}".encode()
        bound = hmac.new(self.secret_key.encode(), sign_in, hashlib.sha256).hexdigest()
        return URLSafeTimedSerializer(self.secret_key, salt=f"corral-dashboard-session:{bound}")

    def dump(self, session: Session) -> str:
        """The cookie value for `session`: signed and timestamped."""
        return self._serializer().dumps({"n": session.nonce, "u": session.user})

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie carries; None when missing, tampered with or expired."""
        if not cookie:
            return None
        try:
            data = self._serializer().loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        user = data.get("u")
        return Session(nonce=data["n"], user=user if isinstance(user, str) else None)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of this session's forms (an HMAC of its nonce)."""
        key = self.secret_key.encode()
        return hmac.new(key, f"csrf:{session.nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), str(token))

    def check_password(self, user: str, password: str) -> bool:
        """True when `user` and `password` are the configured ones (constant time;
        always False when no password is configured)."""
        if not self.password:
            return False
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok
