"""How long a run will take here, before it starts: its queries at the model's measured cost per query, the
method's own work per query (perturbations, readouts: timed on a stand-in model that costs nothing), and the
work it does besides querying (DAX's training), all measured on this machine.

The pages show it beside the budget (Explore, Audio) and sum it before "Run all" (Compare); the command line
prints it. ``docs/measurements.md`` (expected time) compares it with the runs' wall times.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Sequence

import torch

from explainers import get_explainer
from models import BlackBox

PROBE_QUERIES = 256     # the stand-in run's length: enough to reach a method's steady state, a fraction of a second

_COSTS: dict[tuple, float] = {}
_LOCK = threading.Lock()


def fmt_seconds(s: float | None) -> str:
    """A duration as the pages and the command line show it ("…" while it is not known)."""
    if s is None:
        return "…"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


def query_cost(bb: BlackBox) -> float:
    """Seconds per query of ``bb`` where it runs: 64 inputs (or more, whole batches of its tuned size) timed
    twice after a warm-up, the faster kept; measured once per model, device and backend in this process. NaN for a remote model (its
    time is the endpoint's) or one that fails."""
    if bb.meta.get("remote") or bb.input_shape is None:
        return float("nan")
    key = (bb.name, str(bb.device), bb.backend, bb.batch_size)
    with _LOCK:
        if key in _COSTS:
            return _COSTS[key]
    view = bb.view()
    n = view.batch_size * max(1, math.ceil(64 / view.batch_size))    # 64 inputs or more: a steadier figure
    x = torch.rand(n, *bb.input_shape, generator=torch.Generator().manual_seed(0)).to(bb.device)
    try:
        view(x)   # warm-up: the first call allocates
        best = math.inf
        for _ in range(2):
            t0 = time.perf_counter()
            view(x)
            best = min(best, time.perf_counter() - t0)
    except Exception:   # a broken model: no estimate rather than no page
        return float("nan")
    cost = best / n
    with _LOCK:
        _COSTS[key] = cost
    return cost


def expected_seconds(bb: BlackBox, method: str, params: dict[str, Any] | None, input_shape: Sequence[int],
                     seed: int = 0) -> float | None:
    """Expected wall time of ``method`` with ``params`` on ``bb`` for one input of ``input_shape``: the query
    budget times ``query_cost(bb)`` plus the method's own work (``Explainer.extra_seconds``). None when the cost
    per query is unknown (a remote model) or the parameters are invalid."""
    try:
        explainer = get_explainer(method, seed=seed, **(params or {}))
        budget = explainer.query_budget(tuple(input_shape))
    except (ValueError, TypeError):
        return None
    cost = query_cost(bb)
    if not math.isfinite(cost):
        return None
    once, per = method_cost(method, explainer, tuple(input_shape), bb)
    return once + budget * (cost + per) + explainer.extra_seconds(tuple(input_shape), bb.device,
                                                           getattr(bb, "modality", "image"))


def method_cost(method: str, explainer, input_shape: tuple, bb: BlackBox) -> tuple[float, float]:
    """The method's own work: (seconds once, seconds per query), from runs of ``PROBE_QUERIES / 4`` and
    ``PROBE_QUERIES`` queries against a stand-in model that answers random scores at once; cached per method,
    parameters and shape. The part that does not grow with the queries (a design drawn for the whole budget,
    say) is not multiplied by them."""
    key = ("method", method, repr(sorted(explainer.config.items())), input_shape, str(bb.device))
    with _LOCK:
        if key in _COSTS:
            return _COSTS[key]
    try:
        (n1, t1), (n2, t2) = (_probe(explainer, input_shape, bb, n) for n in (PROBE_QUERIES // 4, PROBE_QUERIES))
    except Exception:   # a method that cannot run on the stand-in: no correction rather than no estimate
        return 0.0, 0.0
    per = max(0.0, (t2 - t1) / (n2 - n1)) if n2 > n1 else t2 / max(n2, 1)
    out = (max(0.0, t1 - n1 * per), per)
    with _LOCK:
        _COSTS[key] = out
    return out


class _Enough(Exception):
    """The stand-in model has answered the probe's queries."""


def _probe(explainer, input_shape: tuple, bb: BlackBox, n: int) -> tuple[int, float]:
    """(queries asked, seconds) of the method run against a free stand-in model until it has asked for ``n``
    queries (a method asking for large batches may pass ``n`` with its last one)."""
    k = bb.num_classes or 2
    gen = torch.Generator(device=bb.device).manual_seed(0)
    asked = [0]

    def answer(b: torch.Tensor) -> torch.Tensor:
        if asked[0] >= n:
            raise _Enough
        asked[0] += b.shape[0]
        return torch.rand(b.shape[0], k, generator=gen, device=b.device)

    free = BlackBox(answer, input_shape=input_shape, device=bb.device, modality=getattr(bb, "modality", "image"))
    x = torch.rand(input_shape, generator=gen, device=bb.device)
    t0 = time.perf_counter()
    try:
        for _ in explainer.stream(free, x, 0, min_interval=0.25):
            pass
    except _Enough:
        pass
    return asked[0], time.perf_counter() - t0
