"""Measuring the fastest way to serve a model: which forward (backend, thread count) at which batch size.

Every candidate is timed in turn, round after round, and keeps its best time: a burst of load from another
process then slows every candidate alike instead of whichever was being timed (measured one after the other, a
busy moment once cached batch 1 for EfficientNet-Lite0, and the default runs took 1.7-1.9x as long as at batch 4).
Results are cached on disk by a key that names the model, device, versions and candidates.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence

import torch


FILE_NAME = "tuning.json"    # in models.cache_root()


def _sizes(device: torch.device) -> list[int]:
    return [1, 2, 4, 8, 16, 32] if device.type == "cpu" else [16, 32, 64, 128, 256]


def measure(forwards: Mapping[Hashable, Callable[[torch.Tensor], torch.Tensor]], input_shape: Sequence[int],
            device: torch.device, rounds: int = 3, sizes: Sequence[int] | None = None) -> dict[tuple, float]:
    """Seconds per input for each (candidate, batch size), best of ``rounds`` round-robin rounds.

    On the CPU the sizes stop where one batch takes over 0.5 s (larger ones would only be slower to fill).
    """
    sizes = list(sizes or _sizes(device))
    batches: dict[int, torch.Tensor] = {}
    per: dict[tuple, float] = {}

    def timed(fn, bs: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(batches[bs])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) / bs

    with torch.inference_mode():
        for bs in list(sizes):
            batches[bs] = torch.randn(bs, *input_shape, device=device)
            slow = False
            for name, fn in forwards.items():
                fn(batches[bs])  # warm-up
                per[name, bs] = timed(fn, bs)
                slow |= device.type == "cpu" and per[name, bs] * bs > 0.5
            if slow:
                sizes = sizes[:sizes.index(bs) + 1]
                break
        for _ in range(rounds - 1):
            for bs in sizes:
                for name, fn in forwards.items():
                    per[name, bs] = min(per[name, bs], timed(fn, bs))
    return per


def pick(per: Mapping[tuple, float]) -> tuple:
    """The fastest (candidate, batch); a larger batch must be clearly faster (3 %) to be kept, since it delays
    the first estimate."""
    best, best_t = None, float("inf")
    for key in sorted(per, key=lambda k: k[1]):
        if per[key] < best_t * 0.97:
            best, best_t = key, per[key]
    return best


@dataclass(frozen=True)
class Choice:
    backend: str
    threads: int
    batch: int
    seconds_per_query: float
    speedup: float         # the fastest other backend's best time / this one's (1.0 when there is no other)


def fastest(candidates: Mapping[tuple[str, int], Callable[[torch.Tensor], torch.Tensor]],
            input_shape: Sequence[int], device: torch.device, key: str, cache_dir: Path) -> Choice:
    """The fastest (backend, threads) candidate and batch size, measured once per ``key`` and cached in
    ``cache_dir``."""
    path = cache_dir / FILE_NAME
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    full_key = f"{key}|{sorted(candidates)}"
    if full_key in known:
        return Choice(**known[full_key])
    per = measure(candidates, input_shape, device)
    (backend, threads), batch = pick(per)
    others = [t for (cand, _), t in per.items() if cand[0] != backend]
    mine = per[(backend, threads), batch]
    choice = Choice(backend, threads, batch, mine, min(others) / mine if others else 1.0)
    known[full_key] = choice.__dict__
    try:   # written whole and renamed: another process may be reading it
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return choice
