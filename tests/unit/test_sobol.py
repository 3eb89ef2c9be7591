"""Sobol attribution against a black box whose total-order indices are known analytically.

f(x) = sum_i w_i * mean over grid cell i of x. With x = 1 and the inpainting baseline 0, the masked input's cell
i equals the mask value M_i ~ U[0, 1] (independent across cells), so f = sum_i w_i M_i is additive:
Var f = sum_i w_i^2 / 12 and the total-order index of cell i is ST_i = (w_i^2 / 12) / Var f = w_i^2 / sum w^2.
"""
import pytest
import torch

from explainers import get_explainer
from models import BlackBox

GRID, SIDE = 4, 16
CELL = SIDE // GRID


def additive_box(w: torch.Tensor) -> BlackBox:
    def f(batch):  # (N, 1, 16, 16) -> (N, 1)
        cells = batch[:, 0].reshape(-1, GRID, CELL, GRID, CELL).mean(dim=(2, 4)).reshape(-1, GRID * GRID)
        return (cells * w).sum(1, keepdim=True)
    return BlackBox(f, labels=["f"], input_shape=(1, SIDE, SIDE), name="additive")


def test_sobol_recovers_analytic_total_order_indices():
    w = torch.linspace(0.1, 1.6, GRID * GRID)[torch.randperm(GRID * GRID, generator=torch.Generator().manual_seed(0))]
    truth = (w ** 2 / (w ** 2).sum()).view(GRID, GRID)
    bb = additive_box(w)
    e = get_explainer("sobol", grid_size=GRID, nb_design=256)
    ests = list(e.stream(bb, torch.ones(1, SIDE, SIDE), 0, min_interval=0))
    st = ests[-1].extras["grid"]
    err = (st - truth).abs().max().item()
    print(f"Sobol grid 4, nb_design 256: max |ST - analytic| = {err:.4f}")
    assert err <= 0.03, (st, truth)
    assert bb.queries == 256 * (GRID * GRID + 1)
    # the final map is the bicubic upsampling of the indices: cell means follow the truth
    cell_means = ests[-1].saliency.reshape(GRID, CELL, GRID, CELL).mean(dim=(1, 3))
    assert torch.corrcoef(torch.stack([cell_means.flatten(), truth.flatten()]))[0, 1] > 0.95


def test_sobol_zero_weight_cell_gets_zero_and_estimates_improve():
    w = torch.ones(GRID * GRID)
    w[5] = 0.0  # a cell the model ignores
    bb = additive_box(w)
    ests = list(get_explainer("sobol", grid_size=GRID, nb_design=64).stream(bb, torch.ones(1, SIDE, SIDE), 0,
                                                                             min_interval=0))
    st = ests[-1].extras["grid"].flatten()
    assert st[5].abs() < 1e-6
    truth = torch.full((GRID * GRID,), 1 / 15.0)
    truth[5] = 0
    errs = [(e.extras["grid"].flatten() - truth).abs().max().item() for e in ests if e.queries >= 4 * 17]
    print("errors along the stream", [round(e, 3) for e in errs])
    assert errs[-1] < 0.08 and errs[-1] <= errs[0]


@pytest.mark.parametrize("bad", [5, 48, 100])
def test_sobol_nb_design_must_be_power_of_two(bad):
    with pytest.raises(ValueError, match="nb_design.*power of two"):
        get_explainer("sobol", nb_design=bad)


@pytest.mark.parametrize("n", [4, 8])
def test_sobol_smallest_designs_give_a_map(n):
    """The smallest allowed designs give non-zero indices, and the cell the model ignores is not the top one.
    (N = 2 is refused: the unscrambled sequence's first two points have A = B, which gave an all-zero map.)"""
    w = torch.linspace(0.5, 2.0, GRID * GRID)
    w[3] = 0.0
    st = get_explainer("sobol", grid_size=GRID, nb_design=n).explain(additive_box(w), torch.ones(1, SIDE, SIDE), 0)
    cells = st.reshape(GRID, CELL, GRID, CELL).mean(dim=(1, 3)).flatten()
    assert st.abs().max() > 0
    assert cells.argmax() != 3 and cells[3] < cells.max()


def test_sobol_refuses_two_designs():
    with pytest.raises(ValueError, match="nb_design"):
        get_explainer("sobol", nb_design=2)
