"""Reference model server: any loadable model behind the JSON protocol of ``models/http.py`` (ASGI, uvicorn).

    python -m models.serve efficientnet_lite0 --host 127.0.0.1 --port 8000 [--api-key-env MY_KEY_VAR]

Serves ``GET /v1/info`` and ``POST /v1/predict`` (protocol in ``models/http.py``). With ``--api-key-env VAR``
every request must carry the key held in ``$VAR`` (``Authorization: Bearer`` or ``X-API-Key``), compared in
constant time. ``--fail-rate``, ``--drop-rate`` and ``--delay`` inject faults (HTTP 500, connections closed
mid-answer, slow answers) so clients can be tested against an unreliable API. ``create_app`` and ``serve_in_thread``
run the same server inside a test process on a free 127.0.0.1 port.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import logging
import os
import random
import socket
import sys
import threading
import time
from typing import Any

import numpy as np
import torch

from .base import BlackBox
from .http import PROTOCOL_VERSION, decode_png, decode_tensor

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 2**20


class _Drop(Exception):
    """Raised after the response has started: uvicorn then closes the connection mid-answer."""


def _normalization(bb: BlackBox) -> dict[str, list[float]] | None:
    tf = bb.meta.get("transform")
    mean, std = getattr(tf, "mean", None), getattr(tf, "std", None)
    if mean is None or std is None:
        return None
    return {"mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()]}


def create_app(bb: BlackBox, *, api_key: str | None = None, max_batch: int = 64, fail_rate: float = 0.0,
               drop_rate: float = 0.0, delay: float = 0.0, seed: int = 0):
    """A Starlette app serving ``bb``'s raw outputs (logits stay logits). ``app.state.stats`` counts the work."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    raw_mode = {"logits": "logit", "probs": "prob"}.get(bb.outputs, bb.score_mode)
    model = bb.view(score_mode=raw_mode)   # logits -> logits, probs -> probs: the client picks its score space
    shape = tuple(bb.input_shape)
    norm = _normalization(bb)
    key = api_key.encode() if api_key else None
    rng = random.Random(seed)
    rng_lock = threading.Lock()
    model_lock = threading.Lock()         # one forward at a time: torch already uses every core
    stats = {"requests": 0, "inputs": 0, "failed": 0, "dropped": 0, "refused": 0}
    info = {"name": bb.name, "labels": list(bb.labels), "input_shape": list(shape), "outputs": bb.outputs,
            "modality": bb.modality, "max_batch": int(max_batch), "normalization": norm,
            "protocol": PROTOCOL_VERSION}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorised(request: Request) -> bool:
        if key is None:
            return True
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:]
        return hmac.compare_digest(given.encode(), key)

    async def faults() -> str | None:
        with rng_lock:
            u, v = rng.random(), rng.random()
        if delay:
            await asyncio.sleep(delay * (0.5 + u))
        if u < fail_rate:
            stats["failed"] += 1
            return "fail"
        if v < drop_rate:
            stats["dropped"] += 1
            return "drop"
        return None

    async def get_info(request: Request):
        if not authorised(request):
            stats["refused"] += 1
            return error(401, "missing or wrong API key")
        return JSONResponse(info)

    def run_model(batch: np.ndarray) -> list[list[float]]:
        with model_lock:
            out = model(torch.from_numpy(batch))
        return out.detach().cpu().float().numpy().tolist()

    async def predict(request: Request):
        if not authorised(request):
            stats["refused"] += 1
            return error(401, "missing or wrong API key")
        fault = await faults()
        if fault == "fail":
            return error(500, "injected failure")
        try:
            body = await request.json()
        except Exception:
            return error(400, "the body must be JSON: {\"encoding\": ..., \"inputs\": [...]}")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return error(400, "the body must be a JSON object with an 'inputs' list")
        encoding = body.get("encoding", "tensor")
        inputs = body["inputs"]
        if not inputs:
            return JSONResponse({"scores": []})
        if len(inputs) > max_batch:
            return error(413, f"{len(inputs)} inputs in one request; max_batch is {max_batch}")
        try:
            blobs = [base64.b64decode(s, validate=True) for s in inputs]
            if encoding == "tensor":
                if [int(v) for v in body.get("shape", [])] != list(shape):
                    raise ValueError(f"shape must be {list(shape)}, got {body.get('shape')}")
                arrs = [decode_tensor(b, shape) for b in blobs]
            elif encoding == "png":
                if norm is None:
                    raise ValueError("this model takes tensor inputs only (no image normalization known)")
                arrs = [decode_png(b, shape, norm["mean"], norm["std"]) for b in blobs]
            else:
                raise ValueError(f"encoding must be 'tensor' or 'png', got {encoding!r}")
            batch = np.stack(arrs).astype(np.float32, copy=False)
            if not np.isfinite(batch).all():
                raise ValueError("inputs contain NaN or infinite values")
        except (binascii.Error, TypeError, ValueError, OSError) as e:
            return error(400, f"bad input: {e}")
        scores = await run_in_threadpool(run_model, batch)
        stats["requests"] += 1
        stats["inputs"] += len(scores)
        if fault == "drop":
            return _DroppedResponse()
        return JSONResponse({"scores": scores})

    app = Starlette(routes=[Route("/v1/info", get_info, methods=["GET"]),
                            Route("/v1/predict", predict, methods=["POST"])])
    app.state.stats = stats
    app.state.info = info
    return app


class _DroppedResponse:
    """Starts a response, sends half a body, then fails: the client sees the connection closed mid-answer."""

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"{\"scores\": [", "more_body": True})
        raise _Drop("injected dropped connection")


class ServerThread:
    """uvicorn in a daemon thread on a socket bound here (port 0 = a free port); ``stop()`` shuts it down."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "error"):
        import uvicorn
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"model-server-{self.port}", daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 20:
                raise RuntimeError("the model server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_in_thread(bb: BlackBox, **options: Any) -> ServerThread:
    """Serve ``bb`` on a free 127.0.0.1 port in this process (tests, benchmarks). Options go to ``create_app``."""
    host = options.pop("host", "127.0.0.1")
    port = options.pop("port", 0)
    return ServerThread(create_app(bb, **options), host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a name load_model accepts (e.g. efficientnet_lite0, tiny_cnn, torchvision:resnet18)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    ap.add_argument("--api-key-env", default=None,
                    help="environment variable holding the API key clients must send (none: open server)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--fail-rate", type=float, default=0.0, help="fraction of predict requests answered 500")
    ap.add_argument("--drop-rate", type=float, default=0.0, help="fraction of answers cut off mid-connection")
    ap.add_argument("--delay", type=float, default=0.0, help="mean extra seconds before answering")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault injection")
    args = ap.parse_args(argv)
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"error: --api-key-env {args.api_key_env} is set but ${args.api_key_env} is empty", file=sys.stderr)
            return 2
    from . import load_model
    import uvicorn
    bb = load_model(args.model, device=args.device)
    app = create_app(bb, api_key=key, max_batch=args.max_batch, fail_rate=args.fail_rate,
                     drop_rate=args.drop_rate, delay=args.delay, seed=args.seed)
    print(f"serving {bb.name} ({bb.device}) on http://{args.host}:{args.port}/v1/info"
          + (" (API key required)" if key else ""), file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
