"""Remote endpoint model choice: URL, API key (password field, never echoed), rate limit, price per query.

The form returns an :class:`models.HttpBlackBox` shared by the sessions that name the same endpoint and key
(``st.cache_resource``; the key itself is not part of the visible cache arguments, only its sha256).
``run_cost_text(budget)`` says what a run will cost before it starts.
"""
from __future__ import annotations

import hashlib
import os

import streamlit as st

from models import BlackBox, HttpBlackBox
from models.http import DEFAULT_KEY_ENV, RemoteModelError

PRICE_STATE = "_remote_price_per_query"   # the last price typed in the form, read by run_cost_text


@st.cache_resource(max_entries=8, show_spinner="Connecting to the endpoint…")
def _connect(url: str, key_sha: str, _api_key: str | None, auth: str, encoding: str, rate_limit: float | None,
             concurrency: int) -> HttpBlackBox:
    return HttpBlackBox(url, api_key=_api_key, api_key_env=None, auth=auth, encoding=encoding,
                        rate_limit=rate_limit, concurrency=concurrency)


def run_cost_text(budget: int, price_per_query: float | None = None) -> str:
    """What a run of ``budget`` queries costs: the count and, when a price per query is known, the money.

    Cached inputs are not sent again, so the remote count (and the bill) is at most the budget.
    """
    if price_per_query is None:
        price_per_query = st.session_state.get(PRICE_STATE)
    text = f"This run sends at most {budget:,} queries to the endpoint (inputs already answered are served from cache)"
    if price_per_query:
        text += f" · cost at most {budget * price_per_query:,.4f} at {price_per_query:g} per query"
    return text + "."


def remote_endpoint_form(key_prefix: str = "explore.") -> BlackBox | None:
    """URL, key, rate and price widgets; returns the connected HttpBlackBox or None (the reason is shown)."""
    k = f"{key_prefix}remote."
    url = st.text_input("Endpoint URL", "http://127.0.0.1:8000", key=f"{k}url",
                        help="A server speaking the protocol of models/http.py, e.g. "
                             "`python -m models.serve efficientnet_lite0 --port 8000`.")
    key = st.text_input("API key (optional)", type="password", key=f"{k}key",
                        help=f"Sent in a header, never shown or logged. Empty: ${DEFAULT_KEY_ENV} from the app's "
                             "environment, if set.")
    c1, c2 = st.columns(2)
    auth = c1.selectbox("Key header", ["bearer", "x-api-key"], key=f"{k}auth",
                        format_func={"bearer": "Authorization: Bearer", "x-api-key": "X-API-Key"}.get)
    encoding = c2.selectbox("Input encoding", ["tensor", "png"], key=f"{k}encoding",
                            help="tensor: exact float32 (larger); png: the 8-bit image (smaller, lossy).")
    c3, c4, c5 = st.columns(3)
    rate = c3.number_input("Requests per second (0 = no limit)", 0.0, 10_000.0, 0.0, key=f"{k}rate")
    concurrency = int(c4.number_input("Parallel requests", 1, 32, 4, key=f"{k}concurrency"))
    price = c5.number_input("Price per query (optional)", 0.0, 1e6, 0.0, format="%.6f", key=f"{k}price")
    st.session_state[PRICE_STATE] = price or None
    if not url.strip():
        st.info("Enter the endpoint's URL.")
        return None
    api_key = key or os.environ.get(DEFAULT_KEY_ENV) or None
    key_sha = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
    try:
        bb = _connect(url.strip(), key_sha, api_key, auth, encoding, rate or None, concurrency)
    except (RemoteModelError, ValueError) as e:
        st.error(f"Could not use the endpoint: {e}")
        return None
    except Exception as e:  # anything the network throws: say so, keep the page
        st.error(f"Could not use the endpoint ({type(e).__name__}).")
        return None
    info = bb.meta["info"]
    st.caption(f"Connected: **{info.get('name')}** · {bb.num_classes} classes · input {list(bb.input_shape)} · "
               f"up to {bb.max_batch} inputs per request · {bb.total_remote_queries:,} remote queries so far, "
               f"{bb.cache_hits:,} answered from cache")
    return bb
