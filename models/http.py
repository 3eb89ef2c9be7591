"""HttpBlackBox: a model behind an HTTP endpoint, queried like any other BlackBox.

Black-box saliency methods (RISE, Petsiuk et al. BMVC 2018; Sobol attribution, Fel et al. NeurIPS 2021; ...)
only need scores for perturbed inputs, so they can explain a model that lives behind an API. This module is the
client side of a small JSON protocol; ``models/serve.py`` is a reference server for any loadable model.

Protocol (version 1)
--------------------
``GET  /v1/info``    -> ``{"name", "labels", "input_shape": [C, H, W], "outputs": "logits"|"probs"|"scores",
                        "modality": "image"|"audio", "max_batch": int, "normalization": {"mean", "std"} | null,
                        "protocol": 1}``
``POST /v1/predict`` <- ``{"encoding": "tensor", "shape": [C, H, W], "inputs": [b64, ...]}`` where each item is
                        base64 of the input's raw float32 little-endian bytes (C*H*W values, row-major): exact, fast;
                     <- ``{"encoding": "png", "inputs": [b64, ...]}``: base64 PNGs of the de-normalised image
                        (uint8 RGB or L, H x W; the server normalises with ``normalization``): lossy (8 bits), small;
                     -> ``{"scores": [[K floats], ...]}`` one row per input, raw model outputs of kind ``outputs``.
Errors are ``{"error": "message"}`` with 400 (bad request), 401 (missing or wrong key), 413 (batch larger than
``max_batch``), 5xx (server trouble, retried by the client).
Authentication: when the server has a key, every request carries it as ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``; the server compares it with ``hmac.compare_digest``.

Counting
--------
``bb.queries`` counts every input served to the explainer, whether from the remote model or from the local cache,
so an explainer's ``query_budget`` still equals what the BlackBox counts and ``max_queries`` caps what a method
may *ask*. ``bb.remote_queries`` counts inputs actually sent to the endpoint (what a paid API bills);
``bb.remote_requests`` counts HTTP requests that got an answer (retries included in ``bb.retries``).
Identical inputs (sha256 of the encoded bytes) are answered from the cache and never sent twice.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
import torch

from .base import BlackBox
from .images import ImageTransform

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
ENCODINGS = ("tensor", "png")
AUTH_STYLES = ("bearer", "x-api-key")
DEFAULT_KEY_ENV = "SALIENCY_API_KEY"


class RemoteModelError(RuntimeError):
    """The endpoint refused a request or did not answer; the message says what to check (never the key)."""


class RemoteAuthError(RemoteModelError):
    """401/403: the endpoint refused the API key (or wanted one)."""


class _Secret:
    """Holds an API key so that it never shows up in a repr, a log line or a traceback's locals display."""
    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or None

    def get(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "<secret>" if self._value else "<no key>"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------- encoding
def encode_tensor(x: torch.Tensor) -> bytes:
    """Raw float32 little-endian bytes of one input (C, H, W)."""
    return x.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False).tobytes()


def decode_tensor(data: bytes, shape: Sequence[int]) -> np.ndarray:
    n = int(np.prod(shape))
    if len(data) != 4 * n:
        raise ValueError(f"an input has {len(data)} bytes; shape {list(shape)} needs {4 * n} (float32)")
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def encode_png(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> bytes:
    """The de-normalised image as a PNG (8 bits per channel: what an image API receives)."""
    from PIL import Image
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    t = (x.detach().to("cpu", torch.float32) * s + m).clamp(0, 1)
    arr = (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # level 1: most of the size win at a fraction of the time
    return buf.getvalue()


def decode_png(data: bytes, shape: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    from PIL import Image
    c, h, w = shape
    img = Image.open(io.BytesIO(data))
    if img.size != (w, h):
        raise ValueError(f"a PNG is {img.size[0]}x{img.size[1]}; the model takes {w}x{h}")
    img = img.convert("RGB" if c == 3 else "L")
    arr = np.asarray(img, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1) / 255.0
    return (arr - np.asarray(mean, np.float32).reshape(-1, 1, 1)) / np.asarray(std, np.float32).reshape(-1, 1, 1)


# --------------------------------------------------------------------------------------------- transport
class _RateLimiter:
    """At most ``rate`` request starts per second (evenly spaced), shared by all worker threads."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class HttpTransport:
    """The shared part of every view of one endpoint: connection pool, worker threads, cache, counters."""

    def __init__(self, url: str, *, api_key: _Secret, auth: str, timeout: float, max_retries: int,
                 backoff: float, rate_limit: float | None, concurrency: int, cache_size: int,
                 transport: Any = None):
        import httpx
        self._httpx = httpx
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.auth = auth
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.limiter = _RateLimiter(rate_limit)
        self.concurrency = max(1, int(concurrency))
        self.client = httpx.Client(timeout=timeout, transport=transport,
                                   limits=httpx.Limits(max_connections=self.concurrency,
                                                       max_keepalive_connections=self.concurrency))
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="http-blackbox")
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = int(cache_size)
        self.lock = threading.Lock()
        self.remote_queries = 0     # inputs sent and answered
        self.remote_requests = 0    # HTTP requests answered with 200
        self.retries = 0
        self.cache_hits = 0

    def _headers(self) -> dict[str, str]:
        key = self.api_key.get()
        if not key:
            return {}
        return {"Authorization": f"Bearer {key}"} if self.auth == "bearer" else {"X-API-Key": key}

    def _scrub(self, text: str) -> str:
        key = self.api_key.get()
        return text.replace(key, "***") if key else text

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One call with retries (exponential backoff) on 5xx, 429, timeouts and dropped connections."""
        httpx = self._httpx
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self.lock:
                    self.retries += 1
                # exponential backoff with jitter so parallel workers do not retry in lockstep
                time.sleep(self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))
            self.limiter.wait()
            try:
                r = self.client.request(method, self.url + path, json=payload, headers=self._headers())
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                continue
            except httpx.TransportError as e:  # refused, reset, closed mid-answer
                last = f"connection failed ({type(e).__name__}: {self._scrub(str(e))})"
                continue
            if r.status_code >= 500 or r.status_code == 429:
                last = f"HTTP {r.status_code}: {self._scrub(_error_text(r))}"
                continue
            if r.status_code in (401, 403):
                raise RemoteAuthError(
                    f"{self.url} refused the request with HTTP {r.status_code} ({self._scrub(_error_text(r))}): "
                    + ("the API key was not accepted; check the key you set." if self.api_key else
                       "it wants an API key; set one (environment variable or the key field)."))
            if r.status_code >= 400:
                hint = " (is this a models.serve-compatible endpoint?)" if r.status_code == 404 else ""
                raise RemoteModelError(f"{self.url}{path} answered HTTP {r.status_code}: "
                                       f"{self._scrub(_error_text(r))}{hint}")
            try:
                return r.json()
            except ValueError:
                last = "the answer was not JSON"
                continue
        raise RemoteModelError(f"{self.url}{path} did not answer after {self.max_retries + 1} attempts: {last}")

    # ------------------------------------------------------------------ cache
    def lookup(self, key: str) -> np.ndarray | None:
        with self.lock:
            row = self.cache.get(key)
            if row is not None:
                self.cache.move_to_end(key)
            return row

    def store(self, key: str, row: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        with self.lock:
            self.cache[key] = row
            self.cache.move_to_end(key)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _error_text(r) -> str:
    try:
        body = r.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])[:500]
    except ValueError:
        pass
    return (r.text or r.reason_phrase or "")[:200]


# --------------------------------------------------------------------------------------------- black box
class HttpBlackBox(BlackBox):
    """A BlackBox whose forward pass is ``POST /v1/predict`` on ``url``; built from ``GET /v1/info``.

    Parameters
    ----------
    url: the endpoint's base URL, e.g. ``http://127.0.0.1:8000``.
    api_key_env: name of the environment variable holding the API key (read once, never logged or shown).
    api_key: the key itself (e.g. typed into a password field); wins over ``api_key_env``.
    auth: ``"bearer"`` (``Authorization: Bearer``) or ``"x-api-key"``.
    encoding: ``"tensor"`` (exact float32) or ``"png"`` (8-bit image, needs the server's normalisation).
    concurrency: parallel requests; a batch is split into request-sized chunks sent from a thread pool.
    request_size: inputs per request (default: the server's ``max_batch``).
    timeout, max_retries, backoff: seconds per request; retries on 5xx/429/timeouts/dropped connections, waiting
        ``backoff * 2**k`` (with jitter) before retry k+1.
    rate_limit: at most this many requests per second (None: no limit).
    cache_size: answered inputs kept (LRU); identical inputs are not sent twice. 0 disables the cache.
    max_queries, score_mode, device: as for :class:`BlackBox`.
    """

    def __init__(self, url: str, *, api_key_env: str | None = DEFAULT_KEY_ENV, api_key: str | None = None,
                 auth: str = "bearer", encoding: str = "tensor", concurrency: int = 4,
                 request_size: int | None = None, timeout: float = 30.0, max_retries: int = 4,
                 backoff: float = 0.2, rate_limit: float | None = None, cache_size: int = 20_000,
                 max_queries: int | None = None, score_mode: str = "prob", device: str | None = None,
                 transport: Any = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if auth not in AUTH_STYLES:
            raise ValueError(f"auth must be one of {AUTH_STYLES}, got {auth!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the endpoint URL must look like http://host:port, got {url!r}")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be a positive number of requests per second, got {rate_limit!r}")
        key = api_key if api_key else (os.environ.get(api_key_env) if api_key_env else None)
        self._http = HttpTransport(url, api_key=_Secret(key), auth=auth, timeout=timeout, max_retries=max_retries,
                                   backoff=backoff, rate_limit=rate_limit, concurrency=concurrency,
                                   cache_size=cache_size, transport=transport)
        info = self._http.request("GET", "/v1/info")
        try:
            shape = tuple(int(s) for s in info["input_shape"])
            labels = list(info.get("labels") or []) or None
            outputs = info.get("outputs", "scores")
            max_batch = max(1, int(info.get("max_batch") or 32))
            name = str(info["name"])
        except (KeyError, TypeError, ValueError) as e:
            raise RemoteModelError(f"{url}/v1/info is not a valid model description ({type(e).__name__}: {e})")
        norm = info.get("normalization") or None
        if encoding == "png" and (norm is None or shape[0] not in (1, 3)):
            raise ValueError("png encoding needs an image model with 1 or 3 channels whose server declares its "
                             "normalization; use encoding='tensor'")
        preprocess = to_display = None
        if norm is not None and shape[1] == shape[2]:
            tf = ImageTransform(shape[1], mean=norm["mean"], std=norm["std"])
            preprocess, to_display = tf, tf.to_display
        super().__init__(None, labels=labels, input_shape=shape, name=f"http:{name}@{parts.netloc}",
                         outputs=outputs if outputs in ("logits", "probs", "scores") else "scores",
                         score_mode=score_mode, device=device, preprocess=preprocess, to_display=to_display,
                         modality=info.get("modality", "image"), channels_last=False, max_queries=max_queries,
                         batch_size=min(max_batch, int(request_size or max_batch)),
                         meta={"remote": True, "url": self._http.url, "info": info, "encoding": encoding,
                               "num_classes": len(labels) if labels else None})
        self.url = self._http.url
        self.encoding = encoding
        self.max_batch = max_batch
        self._norm = norm

    # ------------------------------------------------------------------ views and counters
    def _start_counters(self) -> None:
        super()._start_counters()
        self._remote = 0          # each view bills its own remote queries; the transport's totals are shared

    @property
    def remote_queries(self) -> int:
        """Inputs this view sent to the endpoint (cache hits excluded): what a paid API bills."""
        return self._remote

    @property
    def total_remote_queries(self) -> int:
        return self._http.remote_queries

    @property
    def cache_hits(self) -> int:
        return self._http.cache_hits

    @property
    def stats(self) -> dict[str, int]:
        h = self._http
        return {"queries": self.queries, "remote_queries": self._remote, "total_remote_queries": h.remote_queries,
                "remote_requests": h.remote_requests, "retries": h.retries, "cache_hits": h.cache_hits}

    def clear_cache(self) -> None:
        with self._http.lock:
            self._http.cache.clear()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ forward
    def _encode(self, x: torch.Tensor) -> bytes:
        if self.encoding == "png":
            return encode_png(x, self._norm["mean"], self._norm["std"])
        return encode_tensor(x)

    def forward_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, K) of the whole batch: distinct inputs missing from the cache go out in request-sized
        chunks (``batch_size``) sent in parallel; ``BlackBox.__call__`` counts and maps them to scores."""
        h = self._http
        x = x.detach().to("cpu", torch.float32)
        blobs = [self._encode(xi) for xi in x]
        keys = [hashlib.sha256(b).hexdigest() for b in blobs]
        rows: list[np.ndarray | None] = [h.lookup(k) for k in keys]
        todo: dict[str, int] = {}          # first position of each distinct missing input
        for i, (k, r) in enumerate(zip(keys, rows)):
            if r is None and k not in todo:
                todo[k] = i
        with h.lock:
            h.cache_hits += sum(r is not None for r in rows)
        order = list(todo.items())
        size = self.batch_size
        chunks = [order[i:i + size] for i in range(0, len(order), size)]
        futures = [h.pool.submit(self._send, [blobs[i] for _, i in chunk]) for chunk in chunks]
        answered: dict[str, np.ndarray] = {}
        try:
            for chunk, fut in zip(chunks, futures):
                scores = fut.result()
                for (k, _), row in zip(chunk, scores):
                    answered[k] = row
                    h.store(k, row)
        finally:
            for fut in futures:
                fut.cancel()
        sent = len(answered)
        with h.lock:
            self._remote += sent
        out = [r if r is not None else answered[k] for k, r in zip(keys, rows)]
        return torch.from_numpy(np.stack(out))

    def _send(self, blobs: list[bytes]) -> np.ndarray:
        payload: dict[str, Any] = {"encoding": self.encoding,
                                   "inputs": [base64.b64encode(b).decode("ascii") for b in blobs]}
        if self.encoding == "tensor":
            payload["shape"] = list(self.input_shape)
        body = self._http.request("POST", "/v1/predict", payload)
        try:
            scores = np.asarray(body["scores"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise RemoteModelError(f"{self.url}/v1/predict answered without a valid 'scores' array ({e})") from None
        if scores.ndim != 2 or scores.shape[0] != len(blobs):
            raise RemoteModelError(f"{self.url}/v1/predict answered scores of shape {scores.shape} "
                                   f"for {len(blobs)} inputs")
        with self._http.lock:
            self._http.remote_queries += len(blobs)
            self._http.remote_requests += 1
        return scores

    def __repr__(self) -> str:
        return (f"HttpBlackBox({self.url!r}, model={self.meta['info'].get('name')!r}, input_shape={self.input_shape}, "
                f"classes={self.num_classes}, score_mode={self.score_mode!r}, encoding={self.encoding!r}, "
                f"key={self._http.api_key!r})")
