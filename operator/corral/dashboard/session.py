"""Sign-in, sessions and CSRF for the dashboard.

The session is a signed, expiring cookie: itsdangerous's URLSafeTimedSerializer
(an HMAC over the JSON and a timestamp, checked with `max_age`). The cookie
holds nothing secret (who signed in and a random nonce), so signing is enough;
the signature is bound to the user name and password too, so changing the
password ends every session; aiohttp-session's encrypted cookie would add a
middleware, cryptography's Fernet and a storage layer for no gain here.

Signing out must end the session even for a copy of its cookie, which stays
validly signed until it expires: each sign-out is recorded in the audit
table (`LOGOUT_ACTION`, target `session:<session_id>`, a hash of the nonce,
never the nonce), where every process (a restarted one, another replica: the
key outlives both) finds it; `Revocations` is each process's memory of them,
read again from the table at most every `refresh_s` for pages and before
every POST (`corral.dashboard.app.signed_out_sessions`).

Every visitor gets a session (signed in or not): its nonce keys the CSRF token
that every mutating form carries (`csrf_token`), so the sign-in form is covered
too. Passwords are compared in constant time (`hmac.compare_digest`).

Wrong passwords are throttled (`SignInThrottle`): per client address, and
across all of them. Its state is in memory, in the one dashboard process
that answers (a restart, or another replica, starts counting afresh).

Called by `corral.dashboard.routes` and `corral.dashboard.app`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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


LOGOUT_ACTION = "session.logout"
# Sign-outs read back per refresh (newest first): more than this many within
# a cookie's life (each needs the password to sign in first) and the oldest
# are not seen.
LOGOUTS_READ = 1000


def session_id(session: Session) -> str:
    """The session's public name, recorded when it signs out: a hash of its
    nonce (the nonce keys its CSRF token; the audit page is public)."""
    return hashlib.sha256(f"corral-session:{session.nonce}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class Revocations:
    """The sessions signed out before their cookie expires (by
    `session_id`), as this process knows them: its own sign-outs at once,
    everyone's (the audit table's `LOGOUT_ACTION` entries, `learn`) when
    `due`. Each is kept until no cookie it names can still be valid: its
    sign-out plus the cookie's `max_age_s`, plus `skew_s` for clocks."""

    max_age_s: float = MAX_AGE_S
    refresh_s: float = 10.0
    skew_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _until: dict[str, dt.datetime] = field(default_factory=dict)
    _read_at: float | None = None

    def revoke(self, sid: str, at: dt.datetime) -> None:
        """`sid` signed out at `at`."""
        until = at + dt.timedelta(seconds=self.max_age_s + self.skew_s)
        self._until[sid] = max(until, self._until.get(sid, until))

    def revoked(self, sid: str, now: dt.datetime) -> bool:
        until = self._until.get(sid)
        return until is not None and now < until

    def due(self) -> bool:
        """Whether the sign-outs should be read again (never read: yes)."""
        return self._read_at is None or self.clock() - self._read_at >= self.refresh_s

    def reading(self) -> None:
        """A read of the sign-outs starts now (so concurrent requests skip it)."""
        self._read_at = self.clock()

    def learn(self, found: Iterable[tuple[str, dt.datetime]], now: dt.datetime) -> None:
        """Take the audit table's sign-outs: (target, at) pairs."""
        for target, at in found:
            if target.startswith("session:"):
                self.revoke(target.removeprefix("session:"), at)
        for sid in [sid for sid, until in self._until.items() if until <= now]:
            del self._until[sid]


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


@dataclass(slots=True)
class _Tally:
    failures: int  # wrong passwords in a row from the address
    last: float  # when the last one came (the clock's seconds)
    until: float  # it may try again from then


@dataclass(slots=True)
class SignInThrottle:
    """Backoff on wrong passwords, in memory (the dashboard is one process; a
    restart or another replica counts afresh), never a lockout for ever.

    Per client address: `free` wrong passwords in a row, then it waits
    `base_s` before its next try, twice as long after each further wrong one,
    up to `cap_s`; `window_s` without a failure forgets them, and a success
    clears the address at once. While it waits, a try (even with the right
    password) is refused without being checked.

    Across all addresses (guessing spread over many): when `global_max`
    wrong passwords came within `global_window_s`, every address waits until
    the oldest of them leaves the window, except those that signed in within
    `known_s`, so the admin is not held up by someone else's guessing.

    At most `max_tracked` addresses are kept (the least recent dropped first).
    """

    free: int = 5
    base_s: float = 1.0
    cap_s: float = 300.0
    window_s: float = 900.0
    global_max: int = 30
    global_window_s: float = 60.0
    known_s: float = float(MAX_AGE_S)
    max_tracked: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _tallies: dict[str, _Tally] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)
    _known: dict[str, float] = field(default_factory=dict)

    def wait(self, address: str) -> float:
        """Seconds `address` must wait before its password is checked (0: now)."""
        now = self.clock()
        tally = self._current(address, now)
        own = max(0.0, tally.until - now) if tally else 0.0
        return max(own, self._global_wait(address, now))

    def failed(self, address: str) -> int:
        """Record a wrong password from `address`; its failures in a row."""
        now = self.clock()
        tally = self._current(address, now) or _Tally(0, now, now)
        self._tallies.pop(address, None)  # re-inserted last: the dict is oldest first
        tally.failures += 1
        tally.last = now
        if tally.failures >= self.free:
            tally.until = now + min(self.cap_s, self.base_s * 2 ** (tally.failures - self.free))
        self._tallies[address] = tally
        while len(self._tallies) > self.max_tracked:
            del self._tallies[next(iter(self._tallies))]
        self._recent.append(now)
        self._trim(now)
        return tally.failures

    def succeeded(self, address: str) -> None:
        """The right password from `address`: its failures are forgotten."""
        now = self.clock()
        self._tallies.pop(address, None)
        self._known.pop(address, None)
        self._known[address] = now
        while len(self._known) > self.max_tracked:
            del self._known[next(iter(self._known))]

    def tracked(self) -> int:
        """How many addresses it holds failures for."""
        return len(self._tallies)

    def _current(self, address: str, now: float) -> _Tally | None:
        tally = self._tallies.get(address)
        if tally is not None and now - tally.last >= self.window_s:
            del self._tallies[address]
            return None
        return tally

    def _trim(self, now: float) -> None:
        while self._recent and (
            len(self._recent) > self.global_max or now - self._recent[0] >= self.global_window_s
        ):
            self._recent.popleft()

    def _global_wait(self, address: str, now: float) -> float:
        self._trim(now)
        if len(self._recent) < self.global_max:
            return 0.0
        known = self._known.get(address)
        if known is not None and now - known < self.known_s:
            return 0.0
        return max(0.0, self._recent[0] + self.global_window_s - now)


def retry_after(wait_s: float) -> str:
    """A Retry-After header's value for a wait (whole seconds, at least 1)."""
    return str(max(1, math.ceil(wait_s)))
