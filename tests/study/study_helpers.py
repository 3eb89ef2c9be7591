"""Small stimuli for study tests: real photos from skimage with analytic maps (no engine needed)."""
import numpy as np
from skimage import data
from PIL import Image

from study.design import shuffled_map
from study.repo import StimulusSpec


def photo(name: str, side: int = 32) -> np.ndarray:
    return np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((side, side)))


def centre_map(side: int = 32, sigma: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    return np.exp(-((yy - side / 2) ** 2 + (xx - side / 2) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def make_specs(methods=("sobol", "rise", "occlusion"), inputs=("chelsea", "coffee"), attention=True):
    specs = []
    for k, name in enumerate(inputs):
        img = photo(name)
        for j, m in enumerate(methods):
            specs.append(StimulusSpec(name, img, "tiny_cnn", m, np.roll(centre_map(), 3 * j, axis=1),
                                      params={"j": j}, seed=0))
        if attention:
            specs.append(StimulusSpec(name, img, "tiny_cnn", "attention_check", shuffled_map(centre_map(), k),
                                      is_attention_check=True))
    return specs


def in_processes(fn, n: int, *args, timeout: float = 300.0) -> list:
    """Run fn(i, barrier, *args) in n separate (forked) processes; each calls barrier.wait() when ready, so the
    work after it starts together. Returns the n results in order; a process that raised gives
    "error: Type: message". Every process is gone when this returns."""
    import gc
    import multiprocessing as mp
    import queue as queue_mod
    import time

    ctx = mp.get_context("fork")        # children inherit the imports: 150 processes start in seconds
    barrier, results = ctx.Barrier(n), ctx.Queue()

    def main(i):
        try:
            results.put((i, fn(i, barrier, *args)))
        except BaseException as e:       # noqa: BLE001 - reported to the parent, which asserts on it
            results.put((i, f"error: {type(e).__name__}: {e}"))

    procs = [ctx.Process(target=main, args=(i,), daemon=True) for i in range(n)]
    out: dict = {}
    # A forked child inherits the whole test process's heap; its garbage collector would walk (and, writing
    # reference counts, copy) all of it now and then: pauses that belong to the test harness, not to the code
    # under test. Frozen objects are left out of collection (the pattern CPython documents for forking servers).
    gc.freeze()
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                i, r = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue_mod.Empty:
                raise AssertionError(f"only {len(out)} of {n} processes reported within {timeout} s") from None
            out[i] = r
        for p in procs:
            p.join(timeout=30)
    finally:
        gc.unfreeze()
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return [out[i] for i in range(n)]


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")
