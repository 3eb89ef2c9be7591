"""Engine: run an explainer's stream in a background thread, expose immutable snapshots, cancel, cache.

The UI (or a script) submits a job and polls ``job.snapshot()``; the worker thread publishes each new estimate
under a lock. Finished results are cached in memory and on disk by sha256(input bytes) + model id + method + the
method's ``version`` + parameters + seed + target, so the same request again is answered at once, and a method
whose maps changed (its version bumped) computes afresh instead of serving old maps from disk. No streamlit
import here.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.base import BlackBox, QueryBudgetExceeded, cache_root, pick_device

from evaluation.provenance import package_versions
from explainers.base import STOP_WINDOW, StopRule, check_input
from explainers.registry import get_explainer

RUNNING, QUEUED, DONE, CANCELLED, ERROR, STOPPED = "running", "queued", "done", "cancelled", "error", "stopped"
FINISHED = (DONE, CANCELLED, ERROR, STOPPED)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_sha(x: torch.Tensor) -> str:
    t = x.detach().to("cpu", torch.float32).contiguous()
    return sha256_bytes(str(tuple(t.shape)).encode() + t.numpy().tobytes())


@dataclass(frozen=True)
class JobSnapshot:
    """Everything a page needs to draw a job, frozen at one moment."""
    job_id: str
    key: str
    model: str
    method: str
    params: dict[str, Any]
    seed: int
    target: int | None
    status: str
    budget: int
    queries: int = 0
    progress: float = 0.0
    elapsed: float = 0.0
    saliency: np.ndarray | None = None          # (H, W) float32, the latest estimate
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)    # the method's own, as its last estimate gave them
    history: tuple[dict[str, float], ...] = ()  # per estimate: queries, elapsed, rel_change, metrics
    from_cache: bool = False
    error: str | None = None
    first_estimate_s: float | None = None
    device: str = ""                            # where the map was computed ("" until the job starts)
    backend: str = ""                           # what served the queries there (BlackBox.backend)
    original_elapsed: float | None = None       # a cached result: the wall time of the run that computed it
    stop_tol: float | None = None               # stop when converged (Explainer.stream); budget is then the most
    stop_window: int = STOP_WINDOW
    converged: bool = False                     # the run stopped early, converged, at ``queries`` of ``budget``

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def eta(self) -> float | None:
        if self.finished:
            return 0.0
        if self.progress <= 0 or self.elapsed <= 0:
            return None
        # with stop_tol, the time to the end of the budget: the most the run can still take
        return self.elapsed * (1 - self.progress) / self.progress

    def record(self) -> dict[str, Any]:
        """A JSON-able record of the run: enough to rerun it."""
        return {"model": self.model, "method": self.method, "params": self.params, "seed": self.seed,
                "target": self.target, "queries": self.queries, "budget": self.budget, "status": self.status,
                "wall_time_s": round(self.elapsed, 4), "from_cache": self.from_cache, "cache_key": self.key,
                "final_metrics": self.metrics, "versions": package_versions(),
                "device": self.device or None, "backend": self.backend or None, "stop_tol": self.stop_tol,
                "stop_window": self.stop_window if self.stop_tol else None, "converged": self.converged}


class Job:
    def __init__(self, engine: "Engine", snap: JobSnapshot):
        self.engine = engine
        self.id = snap.job_id
        self._snap = snap
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.thread: threading.Thread | None = None

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return self._snap

    def _publish(self, **changes: Any) -> None:
        with self._lock:
            self._snap = replace(self._snap, **changes)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> JobSnapshot:
        self._done.wait(timeout)
        return self.snapshot()


class Engine:
    """Background runner with a result cache (memory + ``cache_dir``) and at most ``max_parallel`` jobs computing."""

    def __init__(self, cache_dir: str | Path | None = None, max_parallel: int | None = None,
                 disk_cache: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "results"
        self.disk_cache = disk_cache
        self._memory: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._lock = threading.Lock()
        n = max_parallel or (4 if pick_device().type == "cuda" else 2)
        self._slots = threading.Semaphore(n)

    # ------------------------------------------------------------------ keys and cache
    @staticmethod
    def cache_key(input_id: str, model_id: str, method: str, params: dict[str, Any], seed: int,
                  target: int | None, version: int = 1, stop: tuple[float, int] | None = None) -> str:
        fields = {"input": input_id, "model": model_id, "method": method, "version": version,
                  "params": params, "seed": seed, "target": target}
        if stop is not None:        # (stop_tol, stop_window): a converged run is another result than a full one
            fields["stop"] = [float(stop[0]), int(stop[1])]
        blob = json.dumps(fields, sort_keys=True, default=str)
        return sha256_bytes(blob.encode())[:32]

    def cached(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        hit = self._memory.get(key)
        if hit is None and self.disk_cache:
            npy, meta = self.cache_dir / f"{key}.npy", self.cache_dir / f"{key}.json"
            if npy.exists() and meta.exists():
                try:
                    hit = (np.load(npy), json.loads(meta.read_text()))
                    self._memory[key] = hit
                except (OSError, ValueError):
                    hit = None
        return hit

    def _store(self, key: str, saliency: np.ndarray, meta: dict[str, Any]) -> None:
        self._memory[key] = (saliency, meta)
        if not self.disk_cache:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_dir / f".{key}.{uuid.uuid4().hex}.npy"
            np.save(tmp, saliency)
            tmp.replace(self.cache_dir / f"{key}.npy")
            (self.cache_dir / f"{key}.json").write_text(json.dumps(meta, default=str))
        except OSError:
            pass  # a read-only disk costs the disk cache, not the result

    def cache_info(self) -> dict[str, Any]:
        files = list(self.cache_dir.glob("*.npy")) if self.cache_dir.exists() else []
        return {"memory_results": len(self._memory), "disk_results": len(files),
                "disk_bytes": sum(f.stat().st_size for f in files), "running": len(self._running),
                "cache_dir": str(self.cache_dir)}

    def clear_cache(self) -> None:
        self._memory.clear()
        if self.cache_dir.exists():
            for f in list(self.cache_dir.glob("*.npy")) + list(self.cache_dir.glob("*.json")):
                f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ jobs
    def submit(self, bb: BlackBox, x: torch.Tensor, method: str, params: dict[str, Any] | None = None,
               target: int | None = None, seed: int = 0, input_id: str | None = None, *,
               min_interval: float = 0.25, use_cache: bool = True, max_queries: int | None = None,
               stop_tol: float | None = None, stop_window: int = STOP_WINDOW) -> Job:
        """Start (or reuse) a job. Bad parameters raise here, at once, before any thread starts.

        ``stop_tol`` stops the run once its map has converged (``Explainer.stream``): the budget is then the
        most it spends, ``queries`` what it spent. None or 0, or a method that cannot stop early, runs in full.
        """
        explainer = get_explainer(method, seed=seed, **(params or {}))
        full_params = dict(explainer.config)
        if stop_tol:
            StopRule(stop_tol, stop_window)             # a bad tolerance or window raises here
        stop = (float(stop_tol), int(stop_window)) if stop_tol and explainer.early_stop else None
        budget = explainer.query_budget(tuple(x.shape)) + (1 if target is None else 0)
        input_id = input_id or tensor_sha(x)
        key = self.cache_key(input_id, bb.id, method, full_params, seed, target, explainer.version, stop)
        base = JobSnapshot(job_id=uuid.uuid4().hex[:12], key=key, model=bb.id, method=method, params=full_params,
                           seed=seed, target=target, status=QUEUED, budget=budget,
                           stop_tol=stop[0] if stop else None, stop_window=stop[1] if stop else STOP_WINDOW)
        with self._lock:
            live = self._running.get(key)
            if live is not None and use_cache:
                return live
            hit = self.cached(key) if use_cache else None
            check = getattr(bb, "check_budget", None)   # a paid API (ChatBlackBox) refuses a run over its cap
            if hit is None and check is not None:
                check(budget if max_queries is None else min(budget, max_queries))
            job = Job(self, base)
            self._jobs[job.id] = job
            if hit is not None:
                sal, meta = hit
                job._publish(status=DONE, saliency=sal, queries=meta.get("queries", budget), progress=1.0,
                             elapsed=0.0, metrics=meta.get("metrics", {}), target=meta.get("target", target),
                             history=tuple(meta.get("history", ())), from_cache=True,
                             device=meta.get("device") or "", backend=meta.get("backend") or "",
                             original_elapsed=meta.get("elapsed"),
                             converged=bool(meta.get("converged", False)))
                job._done.set()
                return job
            self._running[key] = job
        view = bb.view(max_queries=max_queries)
        job.thread = threading.Thread(target=self._work, args=(job, explainer, view, x, target, min_interval),
                                      name=f"explain-{method}-{job.id}", daemon=True)
        job.thread.start()
        return job

    def run(self, bb: BlackBox, x: torch.Tensor, method: str, params: dict[str, Any] | None = None,
            target: int | None = None, seed: int = 0, input_id: str | None = None, **kw: Any) -> JobSnapshot:
        """Blocking convenience for scripts and tests."""
        return self.submit(bb, x, method, params, target, seed, input_id, **kw).wait()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _work(self, job: Job, explainer, bb: BlackBox, x: torch.Tensor, target: int | None,
              min_interval: float) -> None:
        t0 = time.perf_counter()
        status, error = DONE, None
        try:
            with self._slots:
                t0 = time.perf_counter()
                job._publish(status=RUNNING, device=str(bb.device), backend=bb.backend)
                status = self._stream(job, explainer, bb, x, target, min_interval, t0)
        except QueryBudgetExceeded as e:
            status, error = STOPPED, f"Stopped at the query budget: {e}. The partial estimate is kept."
        except Exception as e:  # the page shows it; the app keeps running
            status, error = ERROR, f"{type(e).__name__}: {e}"
        finally:
            self._finish(job, bb, status, error, time.perf_counter() - t0)

    @staticmethod
    def _top_class(explainer, bb: BlackBox, x: torch.Tensor) -> int:
        """The class a ``target=None`` job explains: the model's top class, one counted query (in the budget)."""
        x = check_input(bb, x, explainer.name)
        return int(bb(x.unsqueeze(0))[0].argmax())

    def _stream(self, job: Job, explainer, bb: BlackBox, x: torch.Tensor, target: int | None,
                min_interval: float, t0: float) -> str:
        """Publish every estimate of the method's stream; the final status (done or cancelled)."""
        extra = 0
        if target is None:
            target, extra = self._top_class(explainer, bb, x), 1
            job._publish(target=target)
        history: list[dict[str, float]] = []
        prev: torch.Tensor | None = None
        snap0 = job.snapshot()
        for est in explainer.stream(bb, x, target, min_interval=min_interval, stop_tol=snap0.stop_tol,
                                    stop_window=snap0.stop_window):
            elapsed = time.perf_counter() - t0
            sal = est.saliency
            # undefined after an all-zero map (e.g. Sobol before its second design): not 1e12
            rel = (float((sal - prev).norm() / prev.norm()) if prev is not None and float(prev.norm()) > 0
                   else float("nan"))
            prev = sal
            queries = est.queries + extra
            history.append({"queries": queries, "elapsed": elapsed, "rel_change": rel, **est.metrics})
            first = job.snapshot().first_estimate_s
            job._publish(saliency=sal.numpy().astype(np.float32, copy=False), queries=queries,
                         progress=est.progress, elapsed=elapsed, metrics=dict(est.metrics), extras=dict(est.extras),
                         history=tuple(history), target=target, converged=est.converged,
                         first_estimate_s=first if first is not None else elapsed)
            if job.cancelled:
                return CANCELLED
        return DONE

    def _finish(self, job: Job, bb: BlackBox, status: str, error: str | None, elapsed: float) -> None:
        job._publish(status=status, error=error, elapsed=elapsed, queries=max(job.snapshot().queries, bb.queries))
        snap = job.snapshot()
        if status == DONE and snap.saliency is not None:
            self._store(snap.key, snap.saliency, {
                "queries": snap.queries, "metrics": snap.metrics, "history": list(snap.history),
                "elapsed": elapsed, "target": snap.target, "device": snap.device,
                "backend": snap.backend, "method": snap.method, "params": snap.params, "seed": snap.seed, "model": snap.model,
                "budget": snap.budget, "converged": snap.converged, "stop_tol": snap.stop_tol,
                "stop_window": snap.stop_window if snap.stop_tol else None})
        with self._lock:
            self._running.pop(snap.key, None)
        job._done.set()


_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """One engine per process (the web app shares it across sessions)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
