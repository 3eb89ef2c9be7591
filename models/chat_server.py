"""Reference vision-language server: a local image classifier behind the OpenAI chat-completions protocol.

    python -m models.chat_server --port 8001 [--classifier efficientnet_lite0] [--api-key-env MY_KEY_VAR]

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on loopback, answering from a classifier with genuine
log-probabilities, so that ``models.ChatBlackBox`` is tested over real HTTP (``tests/unit/test_chat.py``).

How the classifier answers (its class names are its vocabulary; words are lowercase runs of letters/digits):

* **Options** (the prompt's last line is ``... one of: a, b, c.``, as ChatBlackBox writes it): a class counts for
  the first option all of whose words are in the class name ("cat" takes "tiger cat", "Egyptian cat", ... but
  not "tabby"; "red fox" takes "red fox" only). An option's probability is the sum of its classes' softmax
  probabilities; the mass of classes no option takes goes to the filler token "The" (as in "The image shows").
  The first token of an option is its first word, capitalised ("Cat").
* **Yes / no** (the prompt's last line is ``Answer yes or no.``): P("Yes") is the mass of the classes whose name
  holds a content word of the question ("Is there a cat?" -> the cat classes), P("No") the rest.
* Tokens with zero probability are not listed, as a real model leaves unlikely tokens out of ``top_logprobs``.
* ``temperature`` > 0 samples the answer from p^(1/T), from a generator seeded by the request's ``seed`` and the
  image, so an answer does not depend on the order or the retries of the requests; ``temperature`` 0 answers the
  most likely token.

``ChatModel.complete(body)`` is the whole answer without HTTP; ``direct_blackbox(chat_bb, model)`` wraps it with
ChatBlackBox's own encoding and scoring into a plain BlackBox: the same model called directly with the same
scoring, which the tests compare with the maps made over HTTP. ``create_app(..., logprobs=False)`` plays an API
that offers no log-probabilities.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import io
import math
import os
import re
import sys
import threading
import time
from typing import Any

import numpy as np
import torch

from .base import BlackBox
from .chat import image_tokens_openai
from .serve import ServerThread, _error, _json

STOPWORDS = {"is", "are", "there", "the", "this", "that", "these", "image", "picture", "photo", "any", "does",
             "contain", "show", "shows", "what", "which", "answer", "yes", "no", "in", "on", "of", "an", "a",
             "or", "it", "see", "you", "can", "do", "with", "one", "word"}
FILLER = "The"
MAX_TOP_LOGPROBS = 20


def words_of(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


class ChatModel:
    """A classifier answering chat requests about an image (module docstring); thread-safe, one forward at a time."""

    def __init__(self, classifier: BlackBox, *, labels: list[str] | None = None, name: str = "reference-vlm",
                 logprobs: bool = True):
        tf = classifier.meta.get("transform")
        if tf is None or classifier.input_shape is None or classifier.input_shape[0] != 3 or \
                classifier.outputs == "scores":
            raise ValueError("the reference server needs an RGB image classifier with its ImageTransform and "
                             "logits or probabilities (its softmax is the answer's distribution)")
        self.classifier = classifier.view(score_mode="prob")
        self.mean, self.std = tf.mean, tf.std
        self.size = classifier.input_shape[1:]
        self.labels = list(labels or classifier.labels)
        self.label_words = [set(words_of(lab)) for lab in self.labels]
        self.name, self.logprobs = name, bool(logprobs)
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ the model
    def class_probs(self, png: bytes) -> np.ndarray:
        """Softmax probabilities (C,) of the classifier for one PNG, resized to its input if need be."""
        from PIL import Image
        img = Image.open(io.BytesIO(png)).convert("RGB")
        h, w = self.size
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - self.mean) / self.std
        with self.lock:
            p = self.classifier(x[None])[0]
        return p.double().cpu().numpy()

    def distribution(self, probs: np.ndarray, prompt: str) -> dict[str, float]:
        """First-token probabilities for ``prompt`` (module docstring), zero-probability tokens left out."""
        lines = [ln for ln in prompt.strip().splitlines() if ln.strip()] or [""]
        last = lines[-1]
        options = re.search(r"one of:\s*(.+?)\.?\s*$", last, flags=re.IGNORECASE)
        out: dict[str, float] = {}
        if options:
            taken = np.zeros(len(probs), dtype=bool)
            for opt in (o.strip() for o in options.group(1).split(",")):
                ow = words_of(opt)
                if not ow:
                    continue
                hit = np.array([set(ow) <= lw for lw in self.label_words]) & ~taken
                taken |= hit
                token = ow[0].capitalize()
                out[token] = out.get(token, 0.0) + float(probs[hit].sum())
            out[FILLER] = float(probs[~taken].sum())
        else:
            question = " ".join(lines[:-1] if re.search(r"yes or no", last, re.IGNORECASE) else lines)
            subject = {w for w in words_of(question) if len(w) > 2 and w not in STOPWORDS}
            hit = np.array([bool(subject & lw) for lw in self.label_words])
            out = {"Yes": float(probs[hit].sum()), "No": float(probs[~hit].sum())}
        return {t: p for t, p in out.items() if p > 0}

    def complete(self, body: dict) -> dict:
        """The chat completion (a dict) for a request body; ValueError says what is wrong with the request."""
        prompt, png = parse_request(body)
        dist = self.distribution(self.class_probs(png), prompt)
        ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
        temperature = float(body.get("temperature") or 0.0)
        if temperature > 0:
            tokens = [t for t, _ in ranked]
            w = np.array([p for _, p in ranked]) ** (1.0 / temperature)
            image_seed = int.from_bytes(hashlib.sha256(png + prompt.encode()).digest()[:8], "little")
            rng = np.random.default_rng([int(body.get("seed") or 0) & 0xFFFFFFFF, image_seed])
            answer = tokens[int(rng.choice(len(tokens), p=w / w.sum()))]
        else:
            answer = ranked[0][0]
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": answer},
                                  "finish_reason": "length", "logprobs": None}
        if body.get("logprobs") and self.logprobs:
            k = max(0, min(int(body.get("top_logprobs") or 0), MAX_TOP_LOGPROBS))
            choice["logprobs"] = {"content": [{**_token(answer, dist[answer]),
                                               "top_logprobs": [_token(t, p) for t, p in ranked[:k]]}]}
        from PIL import Image
        # usage in the client's approximation (models/chat.py): what a hosted API would bill
        prompt_tokens = image_tokens_openai(*Image.open(io.BytesIO(png)).size) + math.ceil(len(prompt) / 4) + 7
        return {"id": "chatcmpl-" + hashlib.sha256(png).hexdigest()[:16], "object": "chat.completion",
                "created": int(time.time()), "model": self.name, "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1}}


def _token(text: str, p: float) -> dict:
    return {"token": text, "logprob": math.log(p), "bytes": list(text.encode())}


def parse_request(body: Any) -> tuple[str, bytes]:
    """(prompt text, PNG bytes) of a chat request with one user message holding text and a data-URL image."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ValueError("the body must be a JSON object with a non-empty 'messages' list")
    texts, images = [], []
    for msg in body["messages"]:
        content = msg.get("content") if isinstance(msg, dict) else None
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                images.append(str((part.get("image_url") or {}).get("url", "")))
    if len(images) != 1:
        raise ValueError(f"the messages must hold exactly one image_url part, got {len(images)}")
    head, _, data = images[0].partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ValueError("the image must be a data URL: data:image/png;base64,...")
    return "\n".join(texts), base64.b64decode(data, validate=True)


# --------------------------------------------------------------------------------------------- HTTP
def create_app(classifier: BlackBox, *, labels: list[str] | None = None, name: str = "reference-vlm",
               api_key: str | None = None, logprobs: bool = True):
    """A Starlette app answering chat completions from ``classifier``; ``app.state.stats`` counts the work and
    ``app.state.model`` is the :class:`ChatModel` (for ``direct_blackbox``)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    model = ChatModel(classifier, labels=labels, name=name, logprobs=logprobs)
    key = api_key.encode() if api_key else None
    stats = {"requests": 0, "refused": 0}

    def authorised(request) -> bool:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        return key is None or hmac.compare_digest(given.encode(), key)

    async def completions(request):
        if not authorised(request):
            stats["refused"] += 1
            return _json({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401)
        try:
            body = await request.json()
        except Exception:
            return _error(400, "the body must be JSON")
        try:
            answer = await run_in_threadpool(model.complete, body)
        except (binascii.Error, OSError, TypeError, ValueError) as e:
            return _error(400, f"bad request: {e}")
        stats["requests"] += 1
        return _json(answer)

    async def models(request):
        if not authorised(request):
            return _error(401, "Incorrect API key provided")
        return _json({"object": "list", "data": [{"id": model.name, "object": "model", "owned_by": "local"}]})

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"])])
    app.state.stats, app.state.model = stats, model
    return app


def serve_in_thread(classifier: BlackBox, **options: Any) -> ServerThread:
    """Serve on a free 127.0.0.1 port in this process; ``srv.url + "/v1"`` is the base URL for ChatBlackBox."""
    host, port = options.pop("host", "127.0.0.1"), options.pop("port", 0)
    return ServerThread(create_app(classifier, **options), host=host, port=port)


def direct_blackbox(chat, model: ChatModel) -> BlackBox:
    """``model`` called in-process with ``chat``'s (a ChatBlackBox) request, PNG encoding and scoring, as a plain
    BlackBox (same labels, shape and batch size): what the maps over HTTP must equal."""
    def fn(batch: torch.Tensor) -> torch.Tensor:
        rows = [chat.score([model.complete(chat.request_body(chat.encode(x), j))
                            for j in range(chat.calls_per_query)]) for x in batch]
        return torch.from_numpy(np.stack(rows).astype(np.float32))
    return BlackBox(fn, labels=chat.labels, input_shape=chat.input_shape, name=f"direct:{model.name}",
                    outputs="probs", batch_size=chat.batch_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.chat_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", default="efficientnet_lite0", help="a name load_model accepts")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--name", default="reference-vlm", help="the model name it reports")
    ap.add_argument("--api-key-env", default=None, help="environment variable holding the key clients must send")
    ap.add_argument("--no-logprobs", action="store_true", help="answer without log-probabilities (samples=k only)")
    args = ap.parse_args(argv)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        print(f"error: --api-key-env {args.api_key_env} is set but ${args.api_key_env} is empty", file=sys.stderr)
        return 2
    from . import load_model
    import uvicorn
    app = create_app(load_model(args.classifier), name=args.name, api_key=key, logprobs=not args.no_logprobs)
    print(f"serving {args.classifier} as {args.name!r} on http://{args.host}:{args.port}/v1/chat/completions",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
