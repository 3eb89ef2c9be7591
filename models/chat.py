"""ChatBlackBox: a vision-language model behind an OpenAI-compatible chat-completions API, queried like a BlackBox.

The LR paper's showcase (Zhang et al., arXiv 2403.15603) explains GPT-Vision through its API. A chat model answers in
text, so a *scoring rule* turns each answer into the score vector the explainers need. ``models/chat_server.py`` is
a reference server for tests and demos; docs/guide-models.md says how to point this client at vLLM, llama.cpp's
server, Ollama or a hosted API.

Request (one per perturbed image, ``POST {base_url}/chat/completions``)::

    {"model": M, "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT + instruction},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}],
     "max_tokens": 1, "temperature": 0, "logprobs": true, "top_logprobs": 20}          # logprob scoring
     "max_tokens": 5, "temperature": T, "seed": S + j                                  # samples=k scoring

The instruction appended to the prompt (``instruct=True``) is ``"Answer with one word, one of: cat, dog, fox."`` or
``"Answer yes or no."``.

Scoring rules
-------------
* **candidates** (default): the answer's first token, ``choices[0].logprobs.content[0].top_logprobs``. A listed
  token counts for a candidate when, lowercased and stripped of leading spaces (and the ``Ġ``/``▁`` markers of
  BPE / SentencePiece), it equals the candidate's first word, or is a prefix of exactly one candidate's first
  word (a word split into several tokens). Tokens of one candidate are summed ("Cat", " cat"). The candidates'
  log-probabilities are then renormalised over the candidates (a softmax): row sums to 1.
  *Missing candidate* (not among the listed tokens): ``missing="floor"`` (default) gives it the smallest listed
  log-probability minus ``MISSING_MARGIN`` = ln 10 (it is at most as likely as the least listed token; we take
  ten times less); ``missing="error"`` raises :class:`ChatAnswerError` instead.
  *Multi-token candidates*: chat-completions APIs offer no teacher forcing (no log-probability of a given
  continuation), so only the first token is scored: candidates must differ in their first word.
* **yes_no=True**: the same with the candidates ``["no", "yes"]``: labels ``["no", "yes"]``, so column 1 is
  P(yes) renormalised over yes and no.
* **samples=k** (for APIs without logprobs): k answers sampled at ``temperature`` with seeds ``seed .. seed+k-1``;
  a row is the share of the k answers whose first word names each candidate (answers naming none count for
  none, so a row may sum to less than 1). k API calls per query: ``bb.calls_per_query``.

Cost and cap
------------
``cost = queries x calls_per_query x ((image + prompt tokens) x price_in + answer tokens x price_out) / 1e6``, prices
per million tokens. Token counts are approximations (``tokens_per_call``): the image by OpenAI's tile rule
(85 + 170 per 512-px tile after fitting the image in 2048 px and its short side in 768 px; 255 for 224 px; pass
``image_tokens=`` for another provider's rule), the text at 4 characters per token plus 7 for the message wrapper,
the answer as ``max_tokens``. ``max_cost`` caps each run: ``check_budget(n)`` (called by the engine before a job
starts) refuses a run whose budget would cost more, and a view that would pass the cap mid-run stops (the engine
keeps the partial map). Answers served from the cache cost nothing and are not counted against the cap.

The API key is read from the environment variable ``api_key_env`` at every request and held nowhere else; the
error messages name the variable, never its value.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import random
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
import torch

from .base import BlackBox, QueryBudgetExceeded
from .http import HttpTransport, RemoteAuthError, RemoteModelError, _error_text, encode_png
from .images import ImageTransform

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MISSING_MARGIN = math.log(10.0)
ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)      # PNG encoding of a [0, 1] image: no normalisation


class ChatAnswerError(RemoteModelError):
    """An answer that cannot be scored (no logprobs, a missing candidate with ``missing="error"``, not a chat
    completion); not retried: the same request would get the same answer."""


class SpendingCapExceeded(QueryBudgetExceeded, ValueError):
    """A run that would cost more than ``max_cost``. A ValueError so the pages show it as a refused start (like a
    bad parameter); a QueryBudgetExceeded so a run stopped mid-way keeps its partial map in the engine."""


class _EnvKey:
    """The API key as the environment holds it *now*: read at each request, never copied into the object."""
    __slots__ = ("env",)

    def __init__(self, env: str | None):
        self.env = env or None

    def get(self) -> str | None:
        return (os.environ.get(self.env) or None) if self.env else None

    def __bool__(self) -> bool:
        return self.get() is not None

    def __repr__(self) -> str:
        return f"<key from ${self.env}>" if self.env else "<no key>"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------- scoring
def first_word(text: str) -> str:
    """Lowercased first word of ``text`` (letters and digits), '' if none."""
    m = re.search(r"[^\W_]+", text or "")
    return m.group(0).lower() if m else ""


def match_token(token: str, words: Sequence[str]) -> int | None:
    """Index of the candidate a first token names (module docstring), or None."""
    t = (token or "").lstrip(" \t\n\u0120\u2581").lower()
    if not t:
        return None
    if t in words:
        return list(words).index(t)
    hits = [i for i, w in enumerate(words) if w.startswith(t)]
    return hits[0] if len(hits) == 1 else None


def score_logprobs(top: Sequence[dict], words: Sequence[str], missing: str = "floor") -> np.ndarray:
    """Candidate probabilities (K,) from one first-token ``top_logprobs`` list, renormalised over the candidates."""
    listed = [float(t["logprob"]) for t in top]
    per: list[list[float]] = [[] for _ in words]
    for t, lp in zip(top, listed):
        i = match_token(str(t.get("token", "")), words)
        if i is not None:
            per[i].append(lp)
    absent = [w for w, lps in zip(words, per) if not lps]
    if absent and missing == "error":
        raise ChatAnswerError(f"candidate(s) {absent} not among the answer's {len(top)} top_logprobs tokens "
                              f"({[t.get('token') for t in top][:10]}); ask for more top_logprobs, reword the "
                              "prompt, or use missing='floor'")
    floor = min(listed) - MISSING_MARGIN
    lp = np.array([np.logaddexp.reduce(v) if v else floor for v in per], dtype=np.float64)
    p = np.exp(lp - lp.max())
    return p / p.sum()


def score_samples(texts: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """Share of the sampled answers whose first word names each candidate (K,)."""
    counts = np.zeros(len(words), dtype=np.float64)
    for text in texts:
        i = match_token(first_word(text), words)
        if i is not None:
            counts[i] += 1
    return counts / max(1, len(texts))


def image_tokens_openai(width: int, height: int) -> int:
    """OpenAI's high-detail rule: fit in 2048 px, short side to 768 px, 85 + 170 per 512-px tile."""
    s = min(1.0, 2048 / max(width, height))
    w, h = width * s, height * s
    s = min(1.0, 768 / min(w, h))
    return 85 + 170 * math.ceil(w * s / 512) * math.ceil(h * s / 512)


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- transport
class ChatTransport(HttpTransport):
    """HttpTransport (pool, rate limit, cache, counters) with the chat API's error handling: HTTP 429 waits what
    Retry-After asks (up to ``max_retry_after``), empty or non-JSON bodies are retried and then named."""

    def __init__(self, url: str, *, key_env: str | None, max_retry_after: float, **kw: Any):
        super().__init__(url, api_key=_EnvKey(key_env), auth="bearer", **kw)
        self.max_retry_after = float(max_retry_after)
        self.prompt_tokens = self.completion_tokens = 0     # as the answers' "usage" reported them

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        httpx, where = self._httpx, self.url + path
        last, wait = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self.lock:
                    self.retries += 1
                # the server's Retry-After when it gave one, else exponential backoff with jitter
                time.sleep(wait if wait is not None else self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
                log.debug("retrying %s (attempt %d): %s", where, attempt + 1, last)
            wait = None
            self.limiter.wait()
            try:
                r = self.client.request(method, where, json=payload, headers=self._headers())
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                continue
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__}: {self._scrub(str(e))})"
                continue
            if r.status_code == 429:
                wait = _retry_after(r.headers.get("retry-after"))
                last = f"HTTP 429 (rate limited{f', Retry-After {wait:g} s' if wait is not None else ''})"
                if wait is not None and wait > self.max_retry_after:
                    raise RemoteModelError(f"{where} is rate-limiting (HTTP 429) and asks to wait {wait:g} s, more "
                                           f"than max_retry_after={self.max_retry_after:g} s; try later or raise it")
                continue
            if r.status_code >= 500:
                last = f"HTTP {r.status_code}: {self._scrub(_error_text(r))}"
                continue
            if r.status_code in (401, 403):
                env = self.api_key.env
                raise RemoteAuthError(
                    f"{where} refused the request with HTTP {r.status_code} ({self._scrub(_error_text(r))}): "
                    + (f"the API key in ${env} was not accepted." if self.api_key else
                       f"it wants an API key; set ${env or 'OPENAI_API_KEY'} (api_key_env names the variable)."))
            if r.status_code >= 400:
                hint = (" (the client posts to BASE_URL/chat/completions: does the base URL end in /v1?)"
                        if r.status_code == 404 else "")
                raise RemoteModelError(f"{where} answered HTTP {r.status_code}: {self._scrub(_error_text(r))}{hint}")
            if not r.content.strip():
                last = "an empty body (HTTP 200)"
                continue
            try:
                return r.json()
            except ValueError:
                last = f"a malformed body, not JSON (starts {self._scrub(r.text[:60])!r})"
                continue
        if last.startswith("HTTP 429"):
            raise RemoteModelError(f"{where} was still rate-limiting after {self.max_retries + 1} attempts ({last}); "
                                   "lower concurrency or rate_limit, or try later")
        raise RemoteModelError(f"{where} did not answer after {self.max_retries + 1} attempts: the last try got {last}")


# --------------------------------------------------------------------------------------------- black box
class ChatBlackBox(BlackBox):
    """A vision-language chat model as a BlackBox: (N, 3, H, W) images in [0, 1] -> (N, K) probabilities.

    Parameters
    ----------
    url: the API's base URL, e.g. ``http://127.0.0.1:8000/v1`` or ``https://api.openai.com/v1``.
    model, prompt: the ``model`` field and the question about the image.
    candidates / yes_no: the scoring rule's answers (module docstring); exactly one of the two.
    api_key_env: environment variable holding the key, read at each request (None: no key sent).
    samples, temperature, seed, answer_tokens: ``samples=k`` scores k sampled answers per query instead of logprobs.
    top_logprobs, missing: how many first tokens to ask for; what a candidate absent from them gets.
    instruct: append the answer instruction to the prompt. image_size: side of the square image sent.
    concurrency, timeout, max_retries, backoff, rate_limit, cache_size, max_retry_after: as for HttpBlackBox; one
        request per image (per sample), ``concurrency`` of them in flight.
    price_in, price_out, max_cost, image_tokens: cost per million input / output tokens, a cap per run, and the
        image's token count (default: OpenAI's tile rule).
    max_queries, batch_size: as for :class:`BlackBox`.
    """

    def __init__(self, url: str, *, model: str, prompt: str, candidates: Sequence[str] | None = None,
                 yes_no: bool = False, api_key_env: str | None = DEFAULT_KEY_ENV, samples: int | None = None,
                 temperature: float = 1.0, seed: int = 0, answer_tokens: int = 5, top_logprobs: int = 20,
                 missing: str = "floor", instruct: bool = True, image_size: int = 224, concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 0.25, rate_limit: float | None = None,
                 cache_size: int = 20_000, max_retry_after: float = 60.0, price_in: float = 0.0,
                 price_out: float = 0.0, max_cost: float | None = None, image_tokens: int | None = None,
                 max_queries: int | None = None, batch_size: int = 32, transport: Any = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the API base URL must look like http://host:port/v1, got {url!r}")
        if bool(yes_no) == bool(candidates):
            raise ValueError("give either candidates=[...] (two or more answers) or yes_no=True")
        labels = ["no", "yes"] if yes_no else [str(c).strip() for c in candidates]
        words = [first_word(c) for c in labels]
        if len(labels) < 2 or not all(words) or len(set(words)) != len(words):
            raise ValueError(f"candidates must be two or more answers that differ in their first word (only the "
                             f"first token is scored): got {labels}")
        if missing not in ("floor", "error"):
            raise ValueError(f"missing must be 'floor' or 'error', got {missing!r}")
        if samples is not None and int(samples) < 1:
            raise ValueError(f"samples must be a positive number of answers per query, got {samples!r}")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit!r}")
        if max_cost is not None and max_cost < 0:
            raise ValueError(f"max_cost must be >= 0, got {max_cost!r}")
        self._http = ChatTransport(url, key_env=api_key_env, max_retry_after=max_retry_after, timeout=timeout,
                                   max_retries=max_retries, backoff=backoff, rate_limit=rate_limit,
                                   concurrency=concurrency, cache_size=cache_size, transport=transport)
        self.url, self.model, self.prompt = self._http.url, str(model), str(prompt)
        self.yes_no, self.words, self.missing = bool(yes_no), words, missing
        self.samples = int(samples) if samples else None
        self.temperature, self.seed, self.answer_tokens = float(temperature), int(seed), int(answer_tokens)
        self.top_logprobs = int(top_logprobs)
        instruction = ("Answer yes or no." if yes_no else f"Answer with one word, one of: {', '.join(labels)}.")
        self.text = f"{self.prompt.rstrip()}\n{instruction}" if instruct else self.prompt
        self.price_in, self.price_out = float(price_in), float(price_out)
        self.max_cost = None if max_cost is None else float(max_cost)
        self.image_tokens = int(image_tokens) if image_tokens else image_tokens_openai(image_size, image_size)
        scoring = {"url": self.url, "model": self.model, "image_size": int(image_size), "text": self.text, "labels": labels, "samples": self.samples,
                   "top_logprobs": self.top_logprobs, "missing": missing, "answer_tokens": self.answer_tokens,
                   "temperature": self.temperature if self.samples else 0.0, "seed": self.seed if self.samples else 0}
        # the answer cache and the engine's result cache (through bb.id) tell requests and scoring rules apart by this
        self._scoring_id = hashlib.sha256(json.dumps(scoring, sort_keys=True).encode()).hexdigest()
        tf = ImageTransform(int(image_size), mean=ZERO, std=ONE)
        super().__init__(None, labels=labels, input_shape=(3, int(image_size), int(image_size)),
                         name=f"chat:{self.model}@{parts.netloc}#{self._scoring_id[:10]}", outputs="probs",
                         score_mode="prob", preprocess=tf, to_display=tf.to_display, channels_last=False,
                         max_queries=max_queries, batch_size=batch_size,
                         meta={"remote": True, "chat": True, "url": self.url, "model": self.model,
                               "prompt": self.prompt, "scoring": "samples" if self.samples else
                               ("yes_no" if yes_no else "candidates"), "num_classes": len(labels)})

    # ------------------------------------------------------------------ cost
    @property
    def calls_per_query(self) -> int:
        return self.samples or 1

    @property
    def tokens_per_call(self) -> dict[str, int]:
        """Approximate tokens billed per API call (module docstring)."""
        return {"image": self.image_tokens, "prompt": math.ceil(len(self.text) / 4) + 7,
                "answer": self.answer_tokens if self.samples else 1}

    def estimate_cost(self, queries: int, price_in: float | None = None, price_out: float | None = None) -> float:
        """What ``queries`` queries cost at most, in the prices' currency (cache hits would cost nothing)."""
        t = self.tokens_per_call
        p_in = self.price_in if price_in is None else float(price_in)
        p_out = self.price_out if price_out is None else float(price_out)
        per_call = ((t["image"] + t["prompt"]) * p_in + t["answer"] * p_out) / 1e6
        return int(queries) * self.calls_per_query * per_call

    def check_budget(self, queries: int) -> None:
        """Refuse (SpendingCapExceeded) a run of ``queries`` queries that could cost more than ``max_cost``."""
        if self.max_cost is None:
            return
        cost = self.estimate_cost(queries)
        if cost > self.max_cost:
            raise SpendingCapExceeded(
                f"this run could cost {cost:.4f} ({queries:,} queries x {self.calls_per_query} API call(s) at "
                f"{self.estimate_cost(1):.6f} per query), more than the spending cap of {self.max_cost:g}; "
                "lower the method's budget or raise the cap")

    # ------------------------------------------------------------------ views and counters
    def _start_counters(self) -> None:
        super()._start_counters()
        self._calls = 0         # API calls this view sent (billed); the cap counts these

    @property
    def remote_calls(self) -> int:
        return self._calls

    @property
    def spent(self) -> float:
        """Estimated cost of the calls this view sent."""
        return self.estimate_cost(1) * self._calls / self.calls_per_query

    @property
    def stats(self) -> dict[str, Any]:
        h = self._http
        return {"queries": self.queries, "remote_calls": self._calls, "spent": self.spent,
                "total_remote_requests": h.remote_requests, "retries": h.retries, "cache_hits": h.cache_hits,
                "prompt_tokens": h.prompt_tokens, "completion_tokens": h.completion_tokens}

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ requests and answers
    def encode(self, x: torch.Tensor) -> bytes:
        """One image (3, H, W) in [0, 1] as the PNG the API gets (8 bits per channel)."""
        return encode_png(x, ZERO, ONE)

    def request_body(self, png: bytes, sample: int = 0) -> dict[str, Any]:
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": self.text}, {"type": "image_url", "image_url": {"url": url}}]}]}
        if self.samples:
            body.update(max_tokens=self.answer_tokens, temperature=self.temperature, seed=self.seed + sample)
        else:
            body.update(max_tokens=1, temperature=0, logprobs=True, top_logprobs=self.top_logprobs)
        return body

    def _choice(self, answer: Any) -> dict:
        try:
            choice = answer["choices"][0]
            if not isinstance(choice, dict):
                raise TypeError
            return choice
        except (KeyError, IndexError, TypeError):
            raise ChatAnswerError(f"{self.url}/chat/completions answered without a 'choices' list: not an "
                                  f"OpenAI-compatible chat completion (got {str(answer)[:120]!r})") from None

    def score(self, answers: Sequence[dict]) -> np.ndarray:
        """One query's row (K,) from its answers (one, or ``samples``): the scoring rule of the module docstring."""
        if self.samples:
            texts = [str((self._choice(a).get("message") or {}).get("content") or "") for a in answers]
            return score_samples(texts, self.words)
        logprobs = self._choice(answers[0]).get("logprobs")
        try:
            top = logprobs["content"][0]["top_logprobs"]
            if not top:
                raise ValueError
        except (KeyError, IndexError, TypeError, ValueError):
            what = "no logprobs" if not logprobs else "no top_logprobs for its first token"
            raise ChatAnswerError(f"{self.url}/chat/completions answered with {what}: this server or model does not "
                                  "return token log-probabilities (it needs 'logprobs': true and 'top_logprobs'); use "
                                  "samples=k to score k sampled answers per query instead") from None
        return score_logprobs(top, self.words, self.missing)

    def _ask(self, png: bytes, sample: int) -> dict:
        answer = self._http.request("POST", "/chat/completions", self.request_body(png, sample))
        usage = answer.get("usage") if isinstance(answer, dict) else None
        with self._http.lock:
            self._http.remote_requests += 1
            if isinstance(usage, dict):
                self._http.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self._http.completion_tokens += int(usage.get("completion_tokens") or 0)
        if not self.samples:
            self.score([answer])     # a bad answer raises here, in the worker, before the others are waited for
        return answer

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (N, K): distinct images missing from the cache go out one request each (``samples``
        each with samples=k), ``concurrency`` in flight; ``BlackBox.__call__`` counts the queries."""
        h = self._http
        pngs = [self.encode(xi) for xi in x.detach().to("cpu", torch.float32)]
        keys = [hashlib.sha256(p + self._scoring_id.encode()).hexdigest() for p in pngs]
        rows: list[np.ndarray | None] = [h.lookup(k) for k in keys]
        todo = {k: p for k, p, r in zip(keys, pngs, rows) if r is None}
        with h.lock:
            h.cache_hits += sum(r is not None for r in rows)
        calls = len(todo) * self.calls_per_query
        with self._lock:        # the cap is hard: what would pass it is never sent
            if self.max_cost is not None and self.estimate_cost(1) * (self._calls + calls) / self.calls_per_query \
                    > self.max_cost + 1e-12:
                raise SpendingCapExceeded(f"spending cap of {self.max_cost:g} reached ({self._calls:,} API calls "
                                          f"sent, about {self.spent:.4f} spent; {calls:,} more asked)")
            self._calls += calls
        futures = {k: [h.pool.submit(self._ask, p, j) for j in range(self.calls_per_query)] for k, p in todo.items()}
        answered: dict[str, np.ndarray] = {}
        try:
            for k, futs in futures.items():
                answered[k] = self.score([f.result() for f in futs]).astype(np.float32)
                h.store(k, answered[k])
        finally:
            for futs in futures.values():
                for f in futs:
                    f.cancel()
        return torch.from_numpy(np.stack([r if r is not None else answered[k] for k, r in zip(keys, rows)]))

    def __repr__(self) -> str:
        scoring = f"samples={self.samples}" if self.samples else ("yes_no=True" if self.yes_no else "logprobs")
        return (f"ChatBlackBox({self.url!r}, model={self.model!r}, labels={self.labels}, {scoring}, "
                f"input_shape={self.input_shape}, key={self._http.api_key!r})")
