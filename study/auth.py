"""Admin access to the designer and results pages (no streamlit: the pages pass their secrets and keys in).

- the password: from `STUDY_ADMIN_PASSWORD` or the Streamlit secret; refused when weak (`password_problem`):
  the admin pages then stay closed and say why;
- the compare: constant time (hmac.compare_digest);
- brute force: `LoginLimiter`, a back-off per key (the pages use one key per browser session and one per
  client address): the first FREE_TRIES wrong passwords cost nothing, each further one doubles the wait
  (2 s, 4 s, ... up to 15 min), during which no password is even checked; quiet for an hour, a key starts over;
- a login expires after SESSION_IDLE_S without use or SESSION_MAX_S in all, and when the password changes.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

ENV_VAR = "STUDY_ADMIN_PASSWORD"
SECRET_KEY = "study_admin_password"
HOW_TO_SET = (f"Set an admin password first: the environment variable `{ENV_VAR}` "
              f"(e.g. `{ENV_VAR}=... make run`) or `{SECRET_KEY} = \"...\"` in `.streamlit/secrets.toml`.")
MIN_PASSWORD_LENGTH = 10
MIN_DISTINCT_CHARACTERS = 5
SESSION_IDLE_S = 30 * 60
SESSION_MAX_S = 8 * 3600


def expected_password(secrets: Mapping[str, Any] | None = None) -> str | None:
    """The configured password: the environment variable first, then the Streamlit secret; None if unset."""
    value = os.environ.get(ENV_VAR)
    if not value and secrets is not None:
        try:
            value = secrets.get(SECRET_KEY)
        except Exception:      # no secrets.toml at all: Streamlit raises on access
            value = None
    return str(value) if value else None


def password_problem(password: str | None) -> str | None:
    """Why `password` is too weak to protect the admin pages, or None when it will do."""
    if password is None:
        return HOW_TO_SET
    core = password.strip()
    if len(core) < MIN_PASSWORD_LENGTH:
        return (f"The admin password is too short ({len(core)} characters without surrounding spaces): "
                f"use at least {MIN_PASSWORD_LENGTH}. The admin pages stay closed until `{ENV_VAR}` "
                f"(or `{SECRET_KEY}` in secrets.toml) is changed and the app restarted.")
    if len(set(core)) < MIN_DISTINCT_CHARACTERS:
        return (f"The admin password repeats too few characters ({len(set(core))} different ones): use at least "
                f"{MIN_DISTINCT_CHARACTERS} different characters. The admin pages stay closed until `{ENV_VAR}` "
                f"(or `{SECRET_KEY}` in secrets.toml) is changed and the app restarted.")
    return None


def password_ok(given: Any, expected: str | None) -> bool:
    """Constant-time comparison (hmac.compare_digest on UTF-8 bytes); never true without a configured password."""
    if not expected or not isinstance(given, str) or not given:
        return False
    try:
        return hmac.compare_digest(given.encode(), expected.encode())
    except UnicodeEncodeError:       # a lone surrogate typed into the form cannot be the password
        return False


# ------------------------------------------------------------------------------------------- brute force
@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginLimiter:
    """Back-off after wrong passwords, per key (thread-safe; in memory, so a restart forgets it)."""
    FREE_TRIES = 5
    BASE_DELAY_S = 2.0
    MAX_DELAY_S = 900.0
    FORGET_AFTER_S = 3600.0
    MAX_KEYS = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic, **limits: float):
        self.clock = clock
        for k, v in limits.items():          # free_tries=..., base_delay_s=..., for tests and deployments
            if not hasattr(self, k.upper()):
                raise TypeError(f"unknown limit {k!r}")
            setattr(self, k.upper(), v)
        self._lock = threading.Lock()
        self._keys: dict[str, _Failures] = {}

    def _state(self, key: str, now: float) -> _Failures:
        f = self._keys.get(key)
        if f is not None and now - f.last > self.FORGET_AFTER_S and now >= f.locked_until:
            f = None                         # quiet for long enough: starts over
        if f is None:
            if len(self._keys) >= self.MAX_KEYS:
                self._prune(now)
            f = self._keys[key] = _Failures()
        return f

    def _prune(self, now: float) -> None:
        old = [k for k, f in self._keys.items() if now - f.last > self.FORGET_AFTER_S and now >= f.locked_until]
        for k in old or sorted(self._keys, key=lambda k: self._keys[k].last)[: len(self._keys) // 2]:
            del self._keys[k]

    def wait_s(self, keys: Iterable[str]) -> float:
        """Seconds before any of `keys` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([max(0.0, self._keys[k].locked_until - now) for k in keys if k in self._keys], default=0.0)

    def attempt(self, keys: Iterable[str], given: Any, expected: str | None) -> tuple[bool, float]:
        """(accepted, seconds to wait). While a key is locked the password is not even compared."""
        keys = list(keys)
        now = self.clock()
        with self._lock:
            wait = max([max(0.0, self._state(k, now).locked_until - now) for k in keys], default=0.0)
            if wait > 0:
                return False, wait
            if password_ok(given, expected):
                for k in keys:
                    self._keys.pop(k, None)
                return True, 0.0
            wait = 0.0
            for k in keys:
                f = self._state(k, now)
                f.count += 1
                f.last = now
                if f.count > self.FREE_TRIES:
                    delay = min(self.BASE_DELAY_S * 2 ** min(f.count - self.FREE_TRIES - 1, 30), self.MAX_DELAY_S)
                    f.locked_until = now + delay
                wait = max(wait, f.locked_until - now)
            return False, max(wait, 0.0)

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()


_DEFAULT_LIMITER = LoginLimiter()


def default_limiter() -> LoginLimiter:
    """The server's one limiter (shared by every session of the process)."""
    return _DEFAULT_LIMITER


# ------------------------------------------------------------------------------------------- sessions
_FINGERPRINT_KEY = secrets.token_bytes(32)


def password_fingerprint(expected: str) -> str:
    """A keyed hash of the password for the session to hold: a changed password ends every login."""
    return hmac.new(_FINGERPRINT_KEY, expected.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def session_problem(login: Mapping[str, Any] | None, expected: str, now: float, *,
                    idle_s: float = SESSION_IDLE_S, max_s: float = SESSION_MAX_S) -> str | None:
    """Why a stored login {"at", "seen", "fingerprint"} is no longer valid, or None while it is."""
    if not login:
        return "not logged in"
    if not hmac.compare_digest(str(login.get("fingerprint", "")), password_fingerprint(expected)):
        return "The admin password has changed: log in again."
    if now - float(login.get("at", 0)) > max_s:
        return f"Your admin session expired after {max_s / 3600:g} hours: log in again."
    if now - float(login.get("seen", 0)) > idle_s:
        return f"Your admin session expired after {idle_s / 60:g} minutes without use: log in again."
    return None


def new_login(expected: str, now: float) -> dict:
    return {"at": now, "seen": now, "fingerprint": password_fingerprint(expected)}
