"""Study design: per-participant trial order (seeded, counterbalanced), attention-check maps, stimuli from the engine.

Order: participants are taken in cycles of n (n = number of trials). Each cycle draws one random base order
(seeded by the study seed and the cycle), and participant k of the cycle sees it rotated by k, so within a
cycle every trial appears once at every position (a Latin-square rotation, Williams 1949 without the carry-over
balancing). In pairwise trials, the side of each stimulus alternates with the participant and the trial, so
each pair is shown left/right equally often.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from study.spec import StimulusSpec, StudyError


def trial_order(trials: list[tuple[int, bool]], seed: int, slot: int) -> list[tuple[int, bool]]:
    """[(trial_id, is_pairwise)] -> this participant's [(trial_id, swapped)] sequence."""
    n = len(trials)
    if n == 0:
        return []
    cycle, k = divmod(int(slot), n)
    base = np.random.default_rng([int(seed) & 0xFFFFFFFF, cycle]).permutation(n)
    order = np.roll(base, -k)
    return [(trials[i][0], bool(trials[i][1] and (slot + int(i)) % 2 == 1)) for i in order]


def shuffled_map(saliency: np.ndarray, seed: int, grid: int = 7) -> np.ndarray:
    """An attention-check map: the blocks of a real map shuffled, so it has the same values but no relation
    to the image (a careful participant rates it low)."""
    s = np.asarray(saliency, dtype=np.float32)
    h, w = s.shape
    ys = np.linspace(0, h, grid + 1).astype(int)
    xs = np.linspace(0, w, grid + 1).astype(int)
    rng = np.random.default_rng(seed)
    # coarse random levels on the same grid, upsampled: independent of where the object is
    levels = rng.permutation(np.array([s[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean()
                                       for i in range(grid) for j in range(grid)])).reshape(grid, grid)
    out = np.empty_like(s)
    for i in range(grid):
        for j in range(grid):
            out[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = levels[i, j]
    return out


def compute_stimuli(bb, inputs: Iterable[tuple[str, object]], methods: dict[str, dict], *, engine=None,
                    seed: int = 0, attention_checks: int = 1, progress=None) -> list[StimulusSpec]:
    """Run every method on every input with the engine and freeze the maps.

    inputs: (name, PIL image) pairs; methods: {method name: params}. `attention_checks` shuffled maps are
    added per input. `progress(i, n)` is called after each map.
    """
    from runtime.engine import default_engine

    engine = engine or default_engine()
    inputs = list(inputs)
    n, done, out = len(inputs) * len(methods), 0, []
    for name, image in inputs:
        x = bb.preprocess(image)
        display = bb.to_display(x)
        first = None
        for method, params in methods.items():
            snap = engine.run(bb, x, method=method, params=dict(params), target=None, seed=seed)
            if snap.status != "done" or snap.saliency is None:
                raise StudyError(f"{method} on {name} failed: {snap.error or snap.status}")
            sal = np.asarray(snap.saliency, dtype=np.float32)
            first = sal if first is None else first
            out.append(StimulusSpec(name, display, bb.id, method, sal, params=dict(params), seed=seed))
            done += 1
            if progress:
                progress(done, n)
        for c in range(attention_checks if first is not None else 0):
            out.append(StimulusSpec(name, display, bb.id, "attention_check",
                                    shuffled_map(first, seed * 1000 + c + len(out)),
                                    params={"shuffled_grid": 7}, seed=seed, is_attention_check=True))
    return out
