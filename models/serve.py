"""Reference model server: any loadable model behind the JSON protocol of ``models/http.py`` (ASGI, uvicorn).

    python -m models.serve efficientnet_lite0 --host 127.0.0.1 --port 8000 [--api-key-env MY_KEY_VAR]

Serves ``GET /v1/info`` and ``POST /v1/predict`` (protocol in ``models/http.py``). With ``--api-key-env VAR``
every request must carry the key held in ``$VAR`` (``Authorization: Bearer`` or ``X-API-Key``), compared in
constant time. ``create_app`` and ``serve_in_thread`` run the same server inside a test process on a free
127.0.0.1 port; the tests wrap that app to inject faults (``tests/faults.py``), so the server itself stays the
one a user runs.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
import os
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


def _normalization(bb: BlackBox) -> dict[str, list[float]] | None:
    tf = bb.meta.get("transform")
    mean, std = getattr(tf, "mean", None), getattr(tf, "std", None)
    if mean is None or std is None:
        return None
    return {"mean": [float(v) for v in mean.flatten()], "std": [float(v) for v in std.flatten()]}


def _json(payload: Any, status: int = 200):
    from starlette.responses import JSONResponse
    return JSONResponse(payload, status_code=status)


def _error(status: int, message: str):
    return _json({"error": message}, status)


class ModelServer:
    """The two endpoints over one model: ``info`` and ``predict`` (Starlette handlers) and their counters."""

    def __init__(self, bb: BlackBox, *, api_key: str | None = None, max_batch: int = 64):
        raw_mode = {"logits": "logit", "probs": "prob"}.get(bb.outputs, bb.score_mode)
        self.model = bb.view(score_mode=raw_mode)   # logits -> logits, probs -> probs: the client picks its space
        self.shape = tuple(bb.input_shape)
        self.norm = _normalization(bb)
        self.max_batch = int(max_batch)
        self.key = api_key.encode() if api_key else None
        self.model_lock = threading.Lock()         # one forward at a time: torch already uses every core
        self.stats = {"requests": 0, "inputs": 0, "refused": 0}
        self.info = {"name": bb.name, "labels": list(bb.labels), "input_shape": list(self.shape),
                     "outputs": bb.outputs, "modality": bb.modality, "max_batch": self.max_batch,
                     "normalization": self.norm, "protocol": PROTOCOL_VERSION}

    def authorised(self, request) -> bool:
        if self.key is None:
            return True
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:]
        return hmac.compare_digest(given.encode(), self.key)

    async def get_info(self, request):
        if not self.authorised(request):
            self.stats["refused"] += 1
            return _error(401, "missing or wrong API key")
        return _json(self.info)

    async def predict(self, request):
        from starlette.concurrency import run_in_threadpool
        if not self.authorised(request):
            self.stats["refused"] += 1
            return _error(401, "missing or wrong API key")
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the body must be JSON: {\"encoding\": ..., \"inputs\": [...]}")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return _error(400, "the body must be a JSON object with an 'inputs' list")
        if not body["inputs"]:
            return _json({"scores": []})
        if len(body["inputs"]) > self.max_batch:
            return _error(413, f"{len(body['inputs'])} inputs in one request; max_batch is {self.max_batch}")
        try:
            batch = self.decode(body)
        except (binascii.Error, TypeError, ValueError, OSError) as e:
            return _error(400, f"bad input: {e}")
        scores = await run_in_threadpool(self.run_model, batch)
        self.stats["requests"] += 1
        self.stats["inputs"] += len(scores)
        return _json({"scores": scores})

    def decode(self, body: dict) -> np.ndarray:
        """The request's inputs as one float32 batch (N, C, H, W); ValueError says what is wrong."""
        encoding = body.get("encoding", "tensor")
        blobs = [base64.b64decode(s, validate=True) for s in body["inputs"]]
        if encoding == "tensor":
            if [int(v) for v in body.get("shape", [])] != list(self.shape):
                raise ValueError(f"shape must be {list(self.shape)}, got {body.get('shape')}")
            arrs = [decode_tensor(b, self.shape) for b in blobs]
        elif encoding == "png":
            if self.norm is None:
                raise ValueError("this model takes tensor inputs only (no image normalization known)")
            arrs = [decode_png(b, self.shape, self.norm["mean"], self.norm["std"]) for b in blobs]
        else:
            raise ValueError(f"encoding must be 'tensor' or 'png', got {encoding!r}")
        batch = np.stack(arrs).astype(np.float32, copy=False)
        if not np.isfinite(batch).all():
            raise ValueError("inputs contain NaN or infinite values")
        return batch

    def run_model(self, batch: np.ndarray) -> list[list[float]]:
        with self.model_lock:
            out = self.model(torch.from_numpy(batch))
        return out.detach().cpu().float().numpy().tolist()


def create_app(bb: BlackBox, *, api_key: str | None = None, max_batch: int = 64):
    """A Starlette app serving ``bb``'s raw outputs (logits stay logits). ``app.state.stats`` counts the work."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    server = ModelServer(bb, api_key=api_key, max_batch=max_batch)
    app = Starlette(routes=[Route("/v1/info", server.get_info, methods=["GET"]),
                            Route("/v1/predict", server.predict, methods=["POST"])])
    app.state.stats = server.stats
    app.state.info = server.info
    return app


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


def main(argv: list[str] | None = None, prog: str = "python -m models.serve") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a registered model (efficientnet_lite0, tiny_cnn, torchvision:resnet18) or an "
                                  ".onnx / TorchScript file (models.open)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    ap.add_argument("--api-key-env", default=None,
                    help="environment variable holding the API key clients must send (none: open server)")
    ap.add_argument("--max-batch", type=int, default=64)
    args = ap.parse_args(argv)
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"error: --api-key-env {args.api_key_env} is set but ${args.api_key_env} is empty", file=sys.stderr)
            return 2
    from .open import open_model
    import uvicorn
    bb = open_model(args.model, device=args.device)
    app = create_app(bb, api_key=key, max_batch=args.max_batch)
    print(f"serving {bb.name} ({bb.device}) on http://{args.host}:{args.port}/v1/info"
          + (" (API key required)" if key else ""), file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
