"""A blocking comparison: several methods on one input through the engine, each map scored.

The twin of the Compare page for scripts, benches and tests: the same runs, the same scores, the same
:class:`evaluation.report.Comparison`. It lives in the runtime (not in ``evaluation``) because it runs jobs.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evaluation import metrics
from models import EXPLAINED_SCORE, explained_view
from evaluation.report import CONTROLS, Comparison, add_controls, run_from_snapshot, unique_labels
from runtime.engine import Engine, default_engine, tensor_sha


def compare(bb: Any, x: Any, target: int, specs: Sequence[tuple[str, str, dict[str, Any], int]], *,
            engine: Engine | None = None, mask: np.ndarray | None = None, mu: bool = True,
            input_id: str | None = None, input_name: str = "input", use_cache: bool = True,
            controls: bool | Sequence[str] = True, control_seed: int = 0,
            score: str = EXPLAINED_SCORE) -> Comparison:
    """Run every (label, method, params, seed) one after the other through the engine and score each map.

    ``controls``: True adds every control row (``evaluation.report.CONTROLS``) after the runs, a sequence adds
    those kinds, False none. On by default, as on the page: without them a deletion AUC has nothing to be read
    against. ``score``: the score the methods explain (the page's: the logit, ``models.EXPLAINED_SCORE``); the
    maps are scored on probabilities whatever it is (``evaluation.metrics``).
    """
    engine = engine or default_engine()
    input_id = input_id or tensor_sha(x)
    comp = Comparison.of(bb, x, target, input_name=input_name, input_sha256=input_id, mask=mask)
    for label, (_, method, params, seed) in zip(unique_labels([s[0] for s in specs]), specs):
        snap = engine.run(explained_view(bb, score), x, method, params, target=target, seed=seed, input_id=input_id, use_cache=use_cache)
        if snap.saliency is None:
            raise RuntimeError(f"{label}: {snap.error or snap.status}")
        scores = metrics.evaluate(bb, x, target, snap.saliency, mask=mask, mu=mu, seed=seed)
        comp.runs.append(run_from_snapshot(label, snap, scores))
    if controls:
        kinds = CONTROLS if controls is True else [controls] if isinstance(controls, str) else list(controls)
        add_controls(comp, bb, x, kinds, seed=control_seed, mu=mu)
    return comp
