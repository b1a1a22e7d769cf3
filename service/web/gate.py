"""The web page's password: one check behind one limiter for every door that asks for it
(the login form, HTTP Basic on /metrics), and sessions that end on the server.

Guessing is slowed down, not locked out: after `FREE_GUESSES` wrong passwords from one
client, each further check waits for its turn (1 s, 2 s, 4 s ... at most `MAX_WAIT_S`
after the last wrong one), and a request before its turn is answered 429 without the
password being looked at. So a guesser gets about one try in `MAX_WAIT_S`, while a person
who knows the password gets in at their next turn, even when a guesser shares their address
(behind a reverse proxy not named in `[web] trusted_proxy`, every client is the proxy).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

FREE_GUESSES = 5
MAX_WAIT_S = 30.0
FORGET_S = 15 * 60.0  # a client quiet this long starts again with its free guesses
SESSION_IDLE_S = 30 * 86400.0
MAX_CLIENTS = 10_000  # bounded memory under a spray of addresses
MAX_SESSIONS = 10_000


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


@dataclass(frozen=True)
class Verdict:
    ok: bool
    wait_s: float = 0.0  # > 0: not checked, come back then (HTTP 429)


class PasswordGate:
    """Checks the password for every door; `clock` is the monotonic clock (tests move it)."""

    def __init__(self, password: str, secret_key: bytes, clock: Callable[[], float] = time.monotonic) -> None:
        self.password = password
        self.clock = clock
        # A session is bound to the password it was opened with: changing it logs everyone out.
        self.tag = hmac.new(secret_key, password.encode(), hashlib.sha256).hexdigest()
        self._lock = threading.Lock()
        self._clients: dict[str, _Record] = {}
        self._sessions: dict[str, float] = {}  # session id -> last seen

    @property
    def required(self) -> bool:
        return bool(self.password)

    def check(self, client: str, given: str) -> Verdict:
        """The password `given` by `client`, if it is that client's turn."""
        with self._lock:
            now = self.clock()
            record = self._record(client, now)
            wait = self._turn(record) - now
            if wait > 0:
                return Verdict(False, wait)
            if given and hmac.compare_digest(given.encode(), self.password.encode()):
                self._clients.pop(client, None)
                return Verdict(True)
            record.failures += 1
            record.last = now
            return Verdict(False)

    def _record(self, client: str, now: float) -> _Record:
        if len(self._clients) > MAX_CLIENTS:
            self._clients = {k: r for k, r in self._clients.items() if now - r.last < FORGET_S}
        record = self._clients.setdefault(client, _Record())
        if record.failures and now - record.last >= FORGET_S:
            record.failures = 0
        return record

    @staticmethod
    def _turn(record: _Record) -> float:
        over = record.failures - FREE_GUESSES
        return record.last + min(MAX_WAIT_S, 2.0 ** over) if over >= 0 else float("-inf")

    # -- sessions ------------------------------------------------------------------------

    def open_session(self) -> str:
        with self._lock:
            now = self.clock()
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: t for k, t in self._sessions.items() if now - t < SESSION_IDLE_S}
                while len(self._sessions) >= MAX_SESSIONS:  # the oldest go first
                    del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = now
            return sid

    def session_valid(self, sid: object, tag: object) -> bool:
        """A signed cookie alone is not enough: its session must still be open here."""
        if not (isinstance(sid, str) and isinstance(tag, str) and hmac.compare_digest(tag, self.tag)):
            return False
        with self._lock:
            now = self.clock()
            seen = self._sessions.get(sid)
            if seen is None or now - seen >= SESSION_IDLE_S:
                self._sessions.pop(sid, None)
                return False
            self._sessions[sid] = now
            return True

    def close_session(self, sid: object) -> None:
        with self._lock:
            self._sessions.pop(sid, None)  # type: ignore[arg-type]
