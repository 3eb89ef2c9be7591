"""A study's lifecycle: open or closed by the researcher, with an optional deadline and participant cap.

    state = status(closed=False, deadline=..., cap=50, joined=12, now=utcnow())
    state.accepts_joins, state.accepts_answers, state.message

- closed (by the researcher) or past its deadline: no new participants and no new answers;
- full (as many participants as the cap): no new participants; those who joined may finish;
- results stay readable and exportable in every state; reopening (or moving the deadline, raising the cap)
  accepts again.

Pure functions of the stored fields and the clock, so the repository, the pages and the tests agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from study.spec import StudyError

OPEN, CLOSED, ENDED, FULL = "open", "closed", "ended", "full"
CLOSED_MESSAGE = "This study is closed and no longer accepts answers. Thank you for your interest."
FULL_MESSAGE = "This study has all the participants it needs and accepts no new ones. Thank you for your interest."


class StudyClosed(StudyError):
    """The study does not accept this now (closed, past its deadline, or full); the message says which."""


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC wall time); PostgreSQL aware ones."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class Lifecycle:
    state: str                      # open | closed | ended | full
    closed: bool                    # closed by the researcher
    deadline: datetime | None       # UTC
    cap: int | None
    joined: int

    @property
    def accepts_joins(self) -> bool:
        return self.state == OPEN

    @property
    def accepts_answers(self) -> bool:
        return self.state in (OPEN, FULL)

    @property
    def message(self) -> str:
        """What a participant is told (nothing about the design or the results)."""
        if self.state == CLOSED:
            return CLOSED_MESSAGE
        if self.state == ENDED:
            return (f"This study ended on {self.deadline:%Y-%m-%d %H:%M} UTC and no longer accepts answers. "
                    "Thank you for your interest.")
        if self.state == FULL:
            return FULL_MESSAGE
        return "This study is open."

    def describe(self) -> str:
        """One line for the researcher."""
        bits = [{OPEN: "🟢 open", CLOSED: "🔴 closed", ENDED: "🔴 ended (deadline passed)",
                 FULL: "🟠 full (no new participants; joined ones may finish)"}[self.state]]
        bits.append(f"{self.joined} joined" + (f" of {self.cap}" if self.cap is not None else ""))
        if self.deadline is not None:
            bits.append(f"deadline {self.deadline:%Y-%m-%d %H:%M} UTC")
        return " · ".join(bits)


def status(*, closed: bool, deadline: datetime | None, cap: int | None, joined: int,
           now: datetime) -> Lifecycle:
    deadline = as_utc(deadline)
    if closed:
        state = CLOSED
    elif deadline is not None and as_utc(now) >= deadline:
        state = ENDED
    elif cap is not None and joined >= cap:
        state = FULL
    else:
        state = OPEN
    return Lifecycle(state, bool(closed), deadline, cap, int(joined))


def require_joins(lc: Lifecycle) -> None:
    if not lc.accepts_joins:
        raise StudyClosed(lc.message)


def require_answers(lc: Lifecycle) -> None:
    if not lc.accepts_answers:
        raise StudyClosed(lc.message)
