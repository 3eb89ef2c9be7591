"""Vision-language API model choice: base URL, model, prompt, candidates or yes/no, key variable, prices, cap.

Returns a :class:`models.ChatBlackBox` shared by the sessions that ask the same thing (``st.cache_resource``). The
key is never typed here: the form takes the *name* of the environment variable holding it, which the client reads
at each request, so no widget, cache argument or session state ever holds the key. The cost per query goes to
``ui.remote``'s price state, so the budget line under the method says what a run costs before it starts; the cap
refuses a run over it when Run is pressed (``ChatBlackBox.check_budget``, called by the engine).
"""
from __future__ import annotations

import os

import streamlit as st

from models import BlackBox, ChatBlackBox
from models.chat import DEFAULT_KEY_ENV
from ui.remote import PRICE_STATE


@st.cache_resource(max_entries=8, show_spinner=False)
def _client(url: str, model: str, prompt: str, candidates: tuple[str, ...] | None, yes_no: bool, key_env: str,
            samples: int | None, temperature: float, image_size: int, concurrency: int, rate_limit: float | None,
            price_in: float, price_out: float, max_cost: float | None) -> ChatBlackBox:
    return ChatBlackBox(url, model=model, prompt=prompt, candidates=list(candidates) if candidates else None,
                        yes_no=yes_no, api_key_env=key_env or None, samples=samples, temperature=temperature,
                        image_size=image_size, concurrency=concurrency, rate_limit=rate_limit, price_in=price_in,
                        price_out=price_out, max_cost=max_cost)


def chat_model_form(key_prefix: str = "explore.") -> BlackBox | None:
    """The form; returns the ChatBlackBox or None (the reason is shown)."""
    k = f"{key_prefix}chat."
    url = st.text_input("API base URL", "http://127.0.0.1:8001/v1", key=f"{k}url",
                        help="An OpenAI-compatible chat-completions API (vLLM, llama.cpp server, Ollama, a hosted "
                             "API); the client posts to BASE/chat/completions. Reference server: "
                             "`python -m models.chat_server --port 8001`.")
    c1, c2 = st.columns(2)
    model = c1.text_input("Model", "reference-vlm", key=f"{k}model")
    key_env = c2.text_input("API key variable", DEFAULT_KEY_ENV, key=f"{k}key_env",
                            help="The name of the environment variable holding the key in the app's environment; "
                                 "the key is read at each request and never shown.")
    prompt = st.text_input("Question about the image", "What is in this image?", key=f"{k}prompt")
    kind = st.radio("Answers", ["Candidates", "Yes / no"], horizontal=True, key=f"{k}kind")
    candidates = None
    if kind == "Candidates":
        text = st.text_input("Candidate answers (comma-separated)", "cat, dog, car", key=f"{k}candidates",
                             help="Scored from the answer's first token; they must differ in their first word.")
        candidates = tuple(c.strip() for c in text.split(",") if c.strip())
    c3, c4, c5 = st.columns(3)
    sampled = c3.checkbox("No logprobs: sample", key=f"{k}sampled",
                          help="For APIs that return no token log-probabilities: k answers per query at a "
                               "temperature, counted (k API calls per query).")
    samples = int(c4.number_input("answers per query (k)", 2, 100, 10, key=f"{k}samples", disabled=not sampled))
    temperature = float(c5.number_input("temperature", 0.1, 2.0, 1.0, 0.1, key=f"{k}temperature",
                                        disabled=not sampled))
    c6, c7, c8 = st.columns(3)
    image_size = int(c6.number_input("image side (px)", 32, 1024, 224, 32, key=f"{k}image_size"))
    concurrency = int(c7.number_input("parallel requests", 1, 64, 4, key=f"{k}concurrency"))
    rate = c8.number_input("requests/s (0 = no limit)", 0.0, 10_000.0, 0.0, key=f"{k}rate")
    c9, c10, c11 = st.columns(3)
    price_in = c9.number_input("price / 1M input tokens", 0.0, 1e4, 0.0, format="%.4f", key=f"{k}price_in")
    price_out = c10.number_input("price / 1M output tokens", 0.0, 1e4, 0.0, format="%.4f", key=f"{k}price_out")
    cap = c11.number_input("spending cap per run (0 = none)", 0.0, 1e6, 0.0, format="%.4f", key=f"{k}cap")
    if not url.strip() or not model.strip() or not prompt.strip():
        st.info("Enter the API's base URL, the model and a question.")
        return None
    try:
        bb = _client(url.strip(), model.strip(), prompt.strip(), candidates, kind != "Candidates", key_env.strip(),
                     samples if sampled else None, temperature, image_size, concurrency, rate or None,
                     float(price_in), float(price_out), float(cap) or None)
    except ValueError as e:
        st.error(f"Could not use this API: {e}")
        return None
    per_query = bb.estimate_cost(1)
    st.session_state[PRICE_STATE] = per_query or None     # read by the budget line under the method
    t = bb.tokens_per_call
    env = key_env.strip()
    key_state = ("no key sent" if not env else f"key from ${env}" if os.environ.get(env) else
                 f"${env} not set: no key sent")
    line = (f"Labels: {', '.join(bb.labels)} · ≈ {sum(t.values())} tokens per call (image {t['image']}, prompt "
            f"{t['prompt']}, answer {t['answer']}) × {bb.calls_per_query} call(s) per query · {key_state}")
    if per_query:
        line += f" · {per_query:.6f} per query"
        if bb.max_cost:
            line += f"; runs over {int(bb.max_cost / per_query):,} queries are refused (cap {bb.max_cost:g})"
    st.caption(line + ". The API is first contacted by the first query.")
    return bb
