"""DAX: concentrates on the region an analytic black box depends on (image and spectrogram), determinism,
exact budget, streaming (sampling progress, then one mask per epoch with its loss)."""
import pytest
import torch

from explainers import get_explainer
from explainers.dax import lime_weights
from models import BlackBox
from tests import analytic

H = 64
REGION = (slice(16, 40), slice(32, 56))


def region_box(x, region=REGION, modality="image"):
    return analytic.region_box(x, region, modality)


def picture():
    """Smooth background and one distinct square (the region): superpixels can follow it."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    x = torch.stack([0.3 * xx, 0.3 * yy, 0.2 * xx * yy])
    x[0, REGION[0], REGION[1]] = 0.9
    x[1, REGION[0], REGION[1]] = -0.8
    return x


def concentrated(sal, region):
    inside = float(sal[region[0], region[1]].sum() / sal.sum())
    share = (region[0].stop - region[0].start) * (region[1].stop - region[1].start) / sal.numel()
    flat = int(sal.flatten().argmax())
    r, c = divmod(flat, sal.shape[1])
    in_region = region[0].start <= r < region[0].stop and region[1].start <= c < region[1].stop
    return inside, share, in_region


@pytest.mark.slow          # ~40 s on 2 shared cores (500 samples, 20 epochs of training)
def test_image_mask_concentrates_on_the_region():
    x = picture()
    bb = region_box(x)
    sal = get_explainer("dax", seed=0, n_samples=500, epochs=20).explain(bb, x, 0)
    inside, share, peak = concentrated(sal, REGION)
    assert sal.shape == (H, H)
    assert peak
    assert share < 0.15 and inside >= 0.7        # the region is 14 % of the image, 70 % of the mass


@pytest.mark.slow
def test_spectrogram_mask_concentrates_on_the_time_frequency_patch():
    x = torch.rand(1, 32, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    region = (slice(8, 16), slice(24, 40))
    bb = region_box(x, region, modality="audio")
    sal = get_explainer("dax", seed=0, n_samples=400, epochs=20, n_segments=24).explain(bb, x, 0)
    inside, share, peak = concentrated(sal, region)
    assert sal.shape == (32, 48)
    assert share < 0.09 and peak and inside >= 0.5   # the patch is 8 % of the spectrogram, half the mass


def test_same_seed_same_map_other_seed_other_map():
    x = picture()
    bb = region_box(x)
    kw = dict(n_samples=64, epochs=2)
    a = get_explainer("dax", seed=1, **kw).explain(bb, x, 0)
    b = get_explainer("dax", seed=1, **kw).explain(bb, x, 0)
    c = get_explainer("dax", seed=2, **kw).explain(bb, x, 0)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("n", [16, 70])
def test_budget_is_exact(n):
    x = picture()
    bb = region_box(x)
    e = get_explainer("dax", seed=0, n_samples=n, epochs=1)
    last = list(e.stream(bb, x, 0))[-1]
    assert e.query_budget(x.shape) == n == bb.queries == last.queries


def test_streams_sampling_progress_then_one_mask_per_epoch():
    x = picture()
    bb = region_box(x)
    bb.batch_size = 8                                # 4 x 8 = 32 samples per sampling step
    e = get_explainer("dax", seed=0, n_samples=96, epochs=3)
    ests = list(e.stream(bb, x, 0, min_interval=0))
    sampling = [s for s in ests if s.extras["phase"] == "sampling"]
    training = [s for s in ests[:-1] if s.extras["phase"] == "training"]
    assert [s.queries for s in sampling] == [32, 64, 96]
    assert [s.extras["epoch"] for s in training] == [1, 2, 3]
    assert all("loss" in s.metrics for s in training)
    progress = [s.progress for s in ests]
    assert progress == sorted(progress) and ests[-1].done and progress[-1] == 1.0


def test_under_segmented_slic_falls_back_to_a_grid():
    """Issue 18: SLIC on a noisy picture can return a single superpixel, and DAX's map was then constant (all
    zero after min-max). Fewer than half of n_segments superpixels: segments.segment cuts a grid of n_segments
    instead, for DAX and DE-CAM alike."""
    from explainers.segments import segment, superpixels
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, 3, 1, 1)[0] * 2
    if int(superpixels(x, "slic", 50).max()) + 1 >= 25:
        pytest.skip("SLIC no longer under-segments this picture: the fallback is not exercised")
    assert int(segment(x, "slic", 50).max()) + 1 >= 25          # the shared segmentation falls back
    last = list(get_explainer("dax", seed=0, n_samples=32, epochs=1).stream(region_box(x), x, 0))[-1]
    assert last.extras["segments"] >= 25
    assert float(last.saliency.max()) > float(last.saliency.min())


def test_lime_weights_favour_samples_near_the_clean_input():
    z = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.float)
    w = lime_weights(z)
    assert float(w[0]) == pytest.approx(1.0)
    assert w[0] > w[1] > w[2] > w[3] >= 0


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="n_samples"):
        get_explainer("dax", n_samples=1)
    with pytest.raises(ValueError, match="segmentation"):
        get_explainer("dax", segmentation="watershed")


def test_runs_on_the_bundled_model(effnet, cat_x):
    bb = effnet.view()
    sal = get_explainer("dax", seed=0, n_samples=32, epochs=1).explain(bb, cat_x, 285)
    assert sal.shape == (224, 224) and torch.isfinite(sal).all()
    assert bb.queries == 32


def test_runs_on_the_bundled_audio_model():
    """The real (1, F, T) sound-event model, when its weights are in the checkout (another helper builds it)."""
    from models import load_model
    try:
        bb = load_model("sound_events", device="cpu")
    except (KeyError, OSError, RuntimeError) as err:
        pytest.skip(f"sound_events model not available: {err}")
    x = torch.randn(*bb.input_shape, generator=torch.Generator().manual_seed(0))
    sal = get_explainer("dax", seed=0, n_samples=48, epochs=1).explain(bb, x, 0)
    assert sal.shape == tuple(bb.input_shape[-2:]) and torch.isfinite(sal).all()
    assert bb.queries == 48


@pytest.mark.slow
def test_on_the_cat_photo_dax_beats_a_smooth_random_map(effnet, cat_x):
    """DAX at its CPU defaults on the real model and photo (its segment student): lower deletion and higher
    insertion AUC than random 7 x 7 block maps, the control with the same smoothness and no knowledge of the
    model. (With the reference's pixel student it lost on both: 0.52 / 0.35 against 0.37 / 0.46.)"""
    from evaluation.metrics import deletion_auc, insertion_auc
    from explainers.registry import explainer_class
    from evaluation.report import control_map

    sal = get_explainer("dax", seed=0, **explainer_class("dax").defaults("cpu")).explain(effnet, cat_x, 285)
    ctrl = [torch.from_numpy(control_map("blocks", tuple(cat_x.shape[-2:]), seed=s)) for s in range(3)]
    dele = deletion_auc(effnet, cat_x, 285, sal)
    ins = insertion_auc(effnet, cat_x, 285, sal)
    c_del = [deletion_auc(effnet, cat_x, 285, c) for c in ctrl]
    c_ins = [insertion_auc(effnet, cat_x, 285, c) for c in ctrl]
    print(f"DAX deletion {dele:.3f} insertion {ins:.3f}; random blocks deletion {c_del} insertion {c_ins}")
    assert dele < 0.8 * min(c_del)
    assert ins > sum(c_ins) / len(c_ins)
