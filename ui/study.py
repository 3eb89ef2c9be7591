"""Study pages' shared pieces: the repository (one per database URL) and the admin password gate."""
from __future__ import annotations

import streamlit as st

from study import Repository, default_url, open_db
from study.auth import HOW_TO_SET, expected_password, password_ok


@st.cache_resource
def _repo(url: str) -> Repository:
    return Repository(open_db(url))


def study_repo() -> Repository:
    """The study database named by STUDY_DB_URL (default data/study.db), shared by all sessions."""
    return _repo(default_url())


def admin_gate(prefix: str) -> bool:
    """True once the admin password was entered in this session (constant-time check)."""
    expected = expected_password(st.secrets)
    if expected is None:
        st.warning(HOW_TO_SET)
        return False
    if st.session_state.get("study_admin_ok"):
        return True
    with st.form(f"{prefix}login"):
        given = st.text_input("Admin password", type="password", key=f"{prefix}password")
        if st.form_submit_button("Log in"):
            if password_ok(given, expected):
                st.session_state["study_admin_ok"] = True
                st.rerun()
            st.error("Wrong password.")
    return False
