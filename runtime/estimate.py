"""How long a run will take here, before it starts: its queries at the model's measured cost per query, plus the
work the method does besides querying (DAX's training), measured on this machine.

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

_COSTS: dict[tuple, float] = {}
_LOCK = threading.Lock()


def query_cost(bb: BlackBox) -> float:
    """Seconds per query of ``bb`` where it runs: two full batches of its tuned size timed after a warm-up,
    the faster kept; measured once per model, device and backend in this process. NaN for a remote model (its
    time is the endpoint's) or one that fails."""
    if bb.meta.get("remote") or bb.input_shape is None:
        return float("nan")
    key = (bb.name, str(bb.device), bb.backend, bb.batch_size)
    with _LOCK:
        if key in _COSTS:
            return _COSTS[key]
    view = bb.view()
    n = view.batch_size
    x = torch.zeros(n, *bb.input_shape, device=bb.device)
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
    return budget * cost + explainer.extra_seconds(tuple(input_shape), bb.device,
                                                           getattr(bb, "modality", "image"))
