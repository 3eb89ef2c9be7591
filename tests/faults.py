"""Fault injection for the HTTP tests: the reference server's app wrapped so that it fails like a real API.

The server in ``models/serve.py`` is the one users run, so it carries no test switches; these tests wrap its ASGI
app instead. ``FaultyApp`` answers a share of predict requests with HTTP 500, cuts a share of answers off
mid-connection (after the model ran: the client loses work it caused), and delays answers, all from a seeded
generator so a failing run can be replayed.
"""
from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

from models.serve import ServerThread, create_app


class InjectedDrop(Exception):
    """Raised after the answer has started: uvicorn then closes the connection mid-answer."""


class FaultyApp:
    """An ASGI app that forwards to ``app`` and injects faults on ``path``; ``stats`` counts what it injected."""

    def __init__(self, app, *, fail_rate: float = 0.0, drop_rate: float = 0.0, delay: float = 0.0, seed: int = 0,
                 path: str = "/v1/predict"):
        self.app = app
        self.state = app.state          # the server's own counters stay where the tests read them
        self.fail_rate, self.drop_rate, self.delay, self.path = fail_rate, drop_rate, delay, path
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stats = {"failed": 0, "dropped": 0}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        with self.lock:
            u, v = self.rng.random(), self.rng.random()
        if self.delay:
            await asyncio.sleep(self.delay * (0.5 + u))
        if u < self.fail_rate:
            self.stats["failed"] += 1
            return await self._answer(send, 500, b'{"error": "injected failure"}')
        if v < self.drop_rate:
            return await self._dropped(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    async def _answer(send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _dropped(self, scope, receive, send) -> None:
        """Let the server answer, then send half a body and fail; an error answer goes through untouched."""
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if not held or held[0].get("status") != 200:
            for message in held:
                await send(message)
            return
        self.stats["dropped"] += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"scores": [', "more_body": True})
        raise InjectedDrop("injected dropped connection")


def serve_with_faults(bb, *, fail_rate: float = 0.0, drop_rate: float = 0.0, delay: float = 0.0, seed: int = 0,
                      **options: Any) -> ServerThread:
    """Like ``models.serve.serve_in_thread``, with faults; the wrapper is ``srv.faults`` (its ``stats``)."""
    faulty = FaultyApp(create_app(bb, **options), fail_rate=fail_rate, drop_rate=drop_rate, delay=delay, seed=seed)
    srv = ServerThread(faulty)
    srv.faults = faulty
    return srv
