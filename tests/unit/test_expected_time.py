"""The expected time a page shows before a run (runtime.estimate) against the run's wall time, for every
black-box image method at its CPU defaults on the cat, and the bundled audio model's DAX (training-dominated).

The model is loaded as the app loads it (on a machine of up to 4 cores, a core left to the page). Prints both
for each method. Asserts, for the image methods, within +-35 % when the machine is not oversubscribed over the
run (load average at most one per core, printed), else a gross bound (within 2x either way) that survives a busy
CI box; the audio DAX within 2x. The figures for a quiet machine, with their command (bench/expected_time.py),
are in the README."""
import os

import pytest

from explainers import explainer_class, list_explainers
from models import explained_view, load_model
from runtime.engine import Engine
from runtime.estimate import expected_seconds


def busy() -> bool:
    return os.getloadavg()[0] > (os.cpu_count() or 1)


def bounds(was_busy: bool) -> tuple[float, float]:
    return (0.5, 2.0) if was_busy or busy() else (1 / 1.35, 1.35)


@pytest.fixture(scope="module")
def app_model(effnet):
    """EfficientNet-Lite0 as the app serves it (``effnet`` first: the ONNX export is made once)."""
    from models.backends import interactive_threads
    return load_model("efficientnet_lite0", device="cpu", threads=interactive_threads())


def measure(bb, x, method):
    params = explainer_class(method).defaults("cpu")
    expected = expected_seconds(bb, method, params, x.shape)
    snap = Engine(disk_cache=False).run(bb, x, method, params, target=None, seed=0, use_cache=False)
    assert snap.status == "done"
    print(f"{bb.name} {method}: expected {expected:.1f} s, took {snap.elapsed:.1f} s "
          f"({snap.elapsed / expected:.2f}); load average {os.getloadavg()[0]:.1f}")
    return expected, snap.elapsed


@pytest.mark.slow
@pytest.mark.parametrize("method", list_explainers(modality="image", white_box=False))
def test_expected_time_matches_the_run_on_the_cat(app_model, cat_image, method):
    bb = explained_view(app_model)
    was_busy = busy()
    expected, took = measure(bb, bb.preprocess(cat_image), method)
    low, high = bounds(was_busy)
    assert low <= took / expected <= high


@pytest.mark.slow
def test_expected_time_counts_dax_training_on_audio():
    from pathlib import Path
    from models.backends import interactive_threads
    bb = explained_view(load_model("sound_events", device="cpu", threads=interactive_threads()))
    clip = Path(__file__).resolve().parents[2] / "assets" / "audio" / "siren.wav"
    x = bb.preprocess(*bb.meta["frontend"].load_audio(str(clip)))
    expected, took = measure(bb, x, "dax")
    training = explainer_class("dax")(**explainer_class("dax").defaults("cpu")).extra_seconds(
        tuple(x.shape), bb.device, "audio")
    assert expected - training < 0.5 * took   # the training is most of the time, and the estimate knows it
    # within 2x only: the training's calibration on stand-in samples moved by a third between runs here
    # (expected 8.1 s and 5.9 s for 8.8 s and 8.4 s runs); the +-35 % promise is for the image methods
    assert 0.5 <= took / expected <= 2.0
