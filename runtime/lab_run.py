"""The convergence lab's background run: ``cosine_curves`` in a thread, its points readable while it runs.

The maths (cosines, bands, the toy field) is in evaluation/lab.py; this is only the threading around it.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from evaluation.lab import cosine_curves, step_band


class LabRun:
    """``cosine_curves`` in a background thread, its points readable while it runs (for live plots)."""

    def __init__(self, bb, x, target, methods: dict[str, dict], seeds: Sequence[int], budget: int):
        self.methods, self.seeds, self.budget = dict(methods), list(seeds), int(budget)
        self.points: dict[str, dict[int, list[tuple[int, float, float | None]]]] = {
            n: {s: [] for s in self.seeds} for n in self.methods}
        self.current: str | None = None
        self.error: str | None = None
        self.done = False
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(bb, x, target), daemon=True, name="lab-run")
        self._thread.start()

    def _point(self, name, seed, q, c, g):
        with self._lock:
            self.current = name
            self.points[name][seed].append((int(q), float(c), None if g is None else float(g)))

    def _run(self, bb, x, target):
        try:
            cosine_curves(bb, x, target, self.methods, self.seeds, [self.budget], on_point=self._point,
                          should_stop=self._stop.is_set)
            if self._stop.is_set():
                self.error = "stopped"
        except Exception as e:  # shown by the page; the app keeps running
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.elapsed = time.perf_counter() - self.started
            self.done = True

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def progress(self) -> float:
        with self._lock:
            got = sum(max((p[0] for p in pts), default=0) for runs in self.points.values() for pts in runs.values())
        return 1.0 if self.done else min(1.0, got / max(1, self.budget * len(self.seeds) * len(self.methods)))

    def bands(self, qgrid: Sequence[int], which: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """name -> (mean, min, max) over seeds of the cosine (which=1) or the completeness gap (which=2)."""
        with self._lock:
            snap = {n: [[(p[0], p[which]) for p in pts] for pts in runs.values()] for n, runs in self.points.items()}
        return {n: step_band(series, qgrid) for n, series in snap.items() if any(series)}
