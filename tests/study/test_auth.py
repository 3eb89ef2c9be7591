"""Admin password rules, the login back-off (per session and per client) and the login expiry."""
import pytest

from study.auth import (LoginLimiter, MIN_PASSWORD_LENGTH, new_login, password_ok, password_problem,
                        session_problem)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("weak", ["a", "0", "   ", "\t\n", "test-adm", " padded-9 ", "aaaaaaaaaaaaaaaa",
                                  "1212121212121", "abab-abab-abab"])
def test_weak_passwords_are_refused(weak):
    problem = password_problem(weak)
    assert problem and "admin pages stay closed" in problem


@pytest.mark.parametrize("good", ["test-admin", "correct horse", "ünïcödé-pässwörd", "0123456789"])
def test_good_passwords_pass(good):
    assert len(good) >= MIN_PASSWORD_LENGTH and password_problem(good) is None


def test_brute_force_300_tries_then_the_right_one():
    """The issue's attack: 300 wrong passwords in one session, then the right one, as fast as possible."""
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    keys = ["session:attacker", "client:10.0.0.9"]
    outcomes = []
    for i in range(300):
        clock.now += 0.009                       # 9 ms a try, as measured through the real form
        outcomes.append(limiter.attempt(keys, f"guess-{i}", "the-real-password"))
    clock.now += 0.009
    ok, wait = limiter.attempt(keys, "the-real-password", "the-real-password")
    assert not ok and wait > 0                   # refused unchecked: still inside the back-off
    assert not any(accepted for accepted, _ in outcomes)
    assert sum(1 for _, w in outcomes if w == 0) == 5               # only 5 tries were free
    # of the 300, only 7 were compared at all: 6 until the first back-off (2 s), 1 when it ran out (then 4 s)
    assert limiter._keys["session:attacker"].count == limiter._keys["client:10.0.0.9"].count == 7
    # waiting it out lets the owner in (and clears both keys)
    clock.now += wait
    assert limiter.attempt(keys, "the-real-password", "the-real-password") == (True, 0.0)
    assert limiter.wait_s(keys) == 0


def test_backoff_doubles_and_is_capped():
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    keys = ["session:s"]
    waits = []
    for _ in range(20):
        if waits:
            clock.now += waits[-1] + 0.001               # wait out every back-off, then try again
        waits.append(limiter.attempt(keys, "wrong", "right")[1])
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:11] == pytest.approx([2, 4, 8, 16, 32, 64])
    assert max(waits) == pytest.approx(LoginLimiter.MAX_DELAY_S) == waits[-1]


def test_per_client_limit_survives_a_new_session():
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    for i in range(6):
        limiter.attempt([f"session:s{i}", "client:1.2.3.4"], "wrong", "right")   # a new session each try
    ok, wait = limiter.attempt(["session:new", "client:1.2.3.4"], "right", "right")
    assert not ok and wait == 2
    # another client is not affected
    assert limiter.attempt(["session:other", "client:5.6.7.8"], "right", "right") == (True, 0.0)


def test_failures_are_forgotten_after_a_quiet_hour():
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(5):
        limiter.attempt(["k"], "wrong", "right")
    clock.now += LoginLimiter.FORGET_AFTER_S + 1
    assert limiter.attempt(["k"], "wrong", "right") == (False, 0.0)     # counted from 1 again: free


def test_limiter_memory_is_bounded():
    clock = Clock()
    limiter = LoginLimiter(clock=clock, max_keys=100)
    for i in range(1000):
        clock.now += 1
        limiter.attempt([f"client:{i}"], "wrong", "right")
    assert len(limiter._keys) <= 100


def test_login_expiry_and_password_change():
    login = new_login("password-one", now=1000.0)
    assert session_problem(login, "password-one", 1000.0 + 60) is None
    assert "without use" in session_problem(login, "password-one", 1000.0 + 31 * 60)
    login["seen"] = 1000.0 + 8 * 3600
    assert "8 hours" in session_problem(login, "password-one", 1000.0 + 8 * 3600 + 1)
    login = new_login("password-one", now=1000.0)
    assert "changed" in session_problem(login, "password-two", 1000.0 + 1)
    assert session_problem(None, "password-one", 0) == "not logged in"


def test_password_ok_never_raises():
    assert not password_ok("\ud800", "right-password")
    assert not password_ok(b"right-password", "right-password")
    assert password_ok("ünï-cödé-1", "ünï-cödé-1")
