"""RISE and Occlusion against black boxes whose answers are known."""
import torch

from explainers import get_explainer
from explainers.occlusion import _starts
from models import BlackBox

H = W = 16


def linear_box(a: torch.Tensor) -> BlackBox:
    return BlackBox(lambda b: (b[:, 0] * a).flatten(1).sum(1, keepdim=True), labels=["f"], input_shape=(1, H, W))


def weights() -> torch.Tensor:
    return torch.rand(H, W, generator=torch.Generator().manual_seed(0)) - 0.3


def test_occlusion_of_a_linear_model_is_the_patch_sum():
    a = weights()
    sal = get_explainer("occlusion", patch=4, stride=4).explain(linear_box(a), torch.ones(1, H, W), 0)
    expected = a.view(4, 4, 4, 4).sum(dim=(1, 3)).repeat_interleave(4, 0).repeat_interleave(4, 1)
    torch.testing.assert_close(sal, expected)


def test_overlapping_patches_average_their_deltas():
    a = weights()
    x = torch.randn(1, H, W, generator=torch.Generator().manual_seed(1))
    e = get_explainer("occlusion", patch=5, stride=3, baseline="constant", value=0.25)
    bb = linear_box(a)
    sal = e.explain(bb, x, 0)
    total, cover = torch.zeros(H, W), torch.zeros(H, W)
    rows, cols = _starts(H, 5, 3), _starts(W, 5, 3)
    assert rows == [0, 3, 6, 9, 11] and bb.queries == len(rows) * len(cols) + 1 == e.query_budget(x.shape)
    for r in rows:           # the definition, one patch at a time
        for c in cols:
            occluded = x.clone()
            occluded[:, r:r + 5, c:c + 5] = 0.25
            delta = (a * x[0]).sum() - (a * occluded[0]).sum()
            total[r:r + 5, c:c + 5] += delta
            cover[r:r + 5, c:c + 5] += 1
    torch.testing.assert_close(sal, total / cover)


def test_rise_masks_are_smooth_shifted_and_keep_p1():
    e = get_explainer("rise", grid_size=4, p1=0.3)
    m = e.masks(*e.draws(512, H, W, torch.Generator().manual_seed(0), "cpu"), H, W)
    assert m.shape == (512, 1, H, W) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean().item() - 0.3) < 0.02
    assert ((m > 0.01) & (m < 0.99)).float().mean() > 0.2              # bilinear: soft edges
    assert not torch.equal(m[0], m[1])


def test_rise_is_unbiased_for_a_constant_model():
    bb = BlackBox(lambda b: torch.full((b.shape[0], 1), 2.0), labels=["c"], input_shape=(1, H, W))
    sal = get_explainer("rise", n_masks=3000, grid_size=4, p1=0.5).explain(bb, torch.ones(1, H, W), 0)
    assert abs(sal.mean().item() - 2.0) < 0.05                          # E[f M] / p1 = f


def test_rise_finds_the_region_a_model_reads():
    def f(b):  # the model only looks at a 4x4 square
        return b[:, 0, 8:12, 2:6].mean(dim=(1, 2)).unsqueeze(1)
    bb = BlackBox(f, labels=["f"], input_shape=(1, H, W))
    sal = get_explainer("rise", n_masks=1500, grid_size=4, p1=0.5).explain(bb, torch.ones(1, H, W), 0)
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[8:12, 2:6] = True
    assert sal[inside].mean() > sal[~inside].mean() + 0.05
    r, c = divmod(int(sal.argmax()), W)
    assert 6 <= r <= 13 and 0 <= c <= 7


def test_occlusion_on_the_real_model_points_at_the_cat(effnet, cat_x):
    # coarse, cheap settings (17 queries); the cat fills the left/centre of the crop, the right is a wall
    bb = effnet.view()
    bb.batch_size = 8      # a fixed chunk: no batch-size measurement inside a unit test
    occ = get_explainer("occlusion", patch=56, stride=56).explain(bb, cat_x, 285)
    assert occ.shape == (224, 224) and occ.max() > 0
    assert occ[:, :112].mean() > occ[:, 168:].mean()
