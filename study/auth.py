"""Admin password for the designer and results pages (no streamlit: the pages pass their secrets in)."""
from __future__ import annotations

import hmac
import os
from typing import Any, Mapping

ENV_VAR = "STUDY_ADMIN_PASSWORD"
SECRET_KEY = "study_admin_password"
HOW_TO_SET = (f"Set an admin password first: the environment variable `{ENV_VAR}` "
              f"(e.g. `{ENV_VAR}=... make run`) or `{SECRET_KEY} = \"...\"` in `.streamlit/secrets.toml`.")


def expected_password(secrets: Mapping[str, Any] | None = None) -> str | None:
    """The configured password: the environment variable first, then the Streamlit secret; None if unset."""
    value = os.environ.get(ENV_VAR)
    if not value and secrets is not None:
        try:
            value = secrets.get(SECRET_KEY)
        except Exception:      # no secrets.toml at all: Streamlit raises on access
            value = None
    return str(value) if value else None


def password_ok(given: Any, expected: str | None) -> bool:
    """Constant-time comparison (hmac.compare_digest on UTF-8 bytes); never true without a configured password."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
