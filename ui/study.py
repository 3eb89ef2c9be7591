"""Study pages' shared pieces: the repository (one per database URL), the admin gate (password rules, rate
limit, expiry, logout), the participant link and the lifecycle controls (close / reopen, deadline, cap)."""
from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from study import Repository, StudyError, default_url, open_db
from study.auth import (HOW_TO_SET, default_limiter, expected_password, new_login, password_problem,
                        session_problem)
from study.validate import MAX_PARTICIPANTS

ADMIN_KEY = "study_admin_login"
PARTICIPANT_PAGE = "study_participant"
_ADMIN_PAGES = ("study_designer", "study_results", PARTICIPANT_PAGE)


@st.cache_resource
def _repo(url: str) -> Repository:
    return Repository(open_db(url))


def study_repo() -> Repository:
    """The study database named by STUDY_DB_URL (default data/study.db), shared by all sessions."""
    return _repo(default_url())


def participant_link(page_url: str | None, code: str) -> str:
    """The link to hand out: the participant page of this app, `…/study_participant?study=CODE`.

    `page_url` is st.context.url (this page's address without its query); its page name is replaced."""
    base = (page_url or "").split("?")[0].split("#")[0].rstrip("/")
    for stem in _ADMIN_PAGES:
        if base.endswith("/" + stem):
            base = base[: -len(stem) - 1]
            break
    return f"{base}/{PARTICIPANT_PAGE}?study={code}"


# ------------------------------------------------------------------------------------------- admin gate
def _limit_keys() -> list[str]:
    """One back-off per browser session and one per client address (a new session does not start over)."""
    ctx = get_script_run_ctx()
    ip = getattr(st.context, "ip_address", None)
    return [f"session:{ctx.session_id if ctx else 'none'}", f"client:{ip or 'local'}"]


def _wait_text(wait: float) -> str:
    wait = math.ceil(wait)
    return f"{wait} s" if wait < 120 else f"{math.ceil(wait / 60)} min"


def admin_gate(prefix: str) -> bool:
    """True while this session holds a valid admin login; else shows why not, or the login form."""
    expected = expected_password(st.secrets)
    if expected is None:
        st.warning(HOW_TO_SET)
        return False
    weak = password_problem(expected)
    if weak:
        st.error(weak)
        return False
    now = time.time()
    login = st.session_state.get(ADMIN_KEY)
    problem = session_problem(login, expected, now)
    if problem is None:
        login["seen"] = now
        if st.sidebar.button("Log out", key=f"{prefix}logout", icon=":material/logout:"):
            st.session_state.pop(ADMIN_KEY, None)
            st.rerun()
        return True
    if login:                                 # expired, or the password changed
        st.session_state.pop(ADMIN_KEY, None)
        st.info(problem)
    with st.form(f"{prefix}login"):
        given = st.text_input("Admin password", type="password", key=f"{prefix}password")
        if st.form_submit_button("Log in"):
            ok, wait = default_limiter().attempt(_limit_keys(), given, expected)
            if ok:
                st.session_state[ADMIN_KEY] = new_login(expected, time.time())
                st.rerun()
            elif wait > 0:
                st.error(f"Wrong password, or too many tries: wait {_wait_text(wait)} before the next one "
                         "(each further wrong password doubles the wait).")
            else:
                st.error("Wrong password.")
    return False


# ------------------------------------------------------------------------------------------- lifecycle
def _browser_zone() -> ZoneInfo | timezone:
    try:
        return ZoneInfo(st.context.timezone) if getattr(st.context, "timezone", None) else timezone.utc
    except Exception:        # noqa: BLE001 - an unknown zone name from the browser: fall back to UTC
        return timezone.utc


def lifecycle_controls(repo: Repository, code: str, prefix: str) -> None:
    """Status line, close / reopen, deadline and participant cap of study `code` (admin pages only)."""
    lc = repo.lifecycle(code)
    st.markdown(f"**Status:** {lc.describe()}")
    k = f"{prefix}{code}."
    if lc.closed:
        if st.button("Reopen the study", key=k + "reopen", icon=":material/lock_open:"):
            repo.reopen_study(code)
            st.rerun()
    elif st.button("Close the study", key=k + "close", icon=":material/lock:",
                   help="No new participants and no new answers; results stay readable and exportable."):
        repo.close_study(code)
        st.rerun()
    zone = _browser_zone()
    shown = (lc.deadline or (datetime.now(timezone.utc) + timedelta(days=14))).astimezone(zone)
    with st.form(k + "limits"):
        has_deadline = st.checkbox("Deadline", lc.deadline is not None, key=k + "has_deadline",
                                   help="After it, no new participants and no new answers.")
        c1, c2 = st.columns(2)
        day = c1.date_input("Deadline date", shown.date(), key=k + "deadline_date")
        hour = c2.time_input(f"Deadline time ({zone})", shown.time().replace(second=0, microsecond=0),
                             key=k + "deadline_time")
        cap = st.number_input("Participant cap (0 = no cap)", 0, MAX_PARTICIPANTS, lc.cap or 0, key=k + "cap",
                              help="Once this many have joined, nobody new can join; those who joined may finish.")
        if st.form_submit_button("Save deadline and cap"):
            deadline = datetime.combine(day, hour, tzinfo=zone) if has_deadline else None
            try:
                repo.set_lifecycle(code, deadline=deadline, max_participants=int(cap) or None)
                st.rerun()
            except StudyError as e:
                st.error(str(e))
