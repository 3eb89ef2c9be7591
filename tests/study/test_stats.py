"""Statistics against hand-computed and published examples."""
import numpy as np
import pytest

from study import stats
from study.analysis import analyse, to_csv

nan = np.nan
# Krippendorff (2011) "Computing Krippendorff's alpha-reliability", section C: 4 observers, 12 units.
KRIPP_C = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
           [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
           [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
           [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_published_example(level, published):
    assert stats.krippendorff_alpha(np.array(KRIPP_C), level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_binary_two_observers():
    # Krippendorff (2011) section A: alpha = 0.095 (by hand: 1 - (20-1) * 4 / (2 * 14 * 6 / 1) ... = 0.095)
    d = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]
    assert stats.krippendorff_alpha(np.array(d), "nominal") == pytest.approx(0.095, abs=5e-4)


def test_krippendorff_edge_cases():
    assert stats.krippendorff_alpha(np.array([[1, 2, 3], [1, 2, 3]]), "ordinal") == pytest.approx(1.0)
    assert np.isnan(stats.krippendorff_alpha(np.array([[2, 2], [2, 2]])))          # no variation
    # 2 raters, 2 units, perfectly opposite ordinal ratings 1/2: o = [[0,2],[2,0]], n = 4, n_c = (2,2)
    # d2 = (2+2 - (2+2)/2)^2 = 4; alpha = 1 - 3 * (4*4) / (2*2*4*2) = -0.5
    assert stats.krippendorff_alpha(np.array([[1, 2], [2, 1]]), "ordinal") == pytest.approx(-0.5)


def test_mean_ci_by_hand():
    # 2, 4, 4, 5: mean 3.75, s = sqrt(1.5833) = 1.2583, t(0.975, 3) = 3.1824 -> half width 2.0023
    m, lo, hi, n = stats.mean_ci([2, 4, 4, 5])
    assert (m, n) == (3.75, 4)
    assert hi - m == pytest.approx(3.182446 * 1.258306 / 2, rel=1e-5) and m - lo == pytest.approx(hi - m)
    assert np.isnan(stats.mean_ci([3])[1]) and stats.mean_ci([])[3] == 0


def test_win_matrix_and_bradley_terry():
    items, w = stats.win_matrix([("a", "b")] * 3 + [("b", "a")], ["a", "b"])
    assert w.tolist() == [[0, 3], [1, 0]]
    p = stats.bradley_terry(w)
    assert p[0] / p[1] == pytest.approx(3.0, rel=1e-6)       # two items: p_a/p_b = wins ratio
    # three items: the MLE solves W_i = sum_j n_ij p_i / (p_i + p_j) (Hunter 2004, eq. 3)
    w3 = np.array([[0, 4, 3], [2, 0, 5], [1, 1, 0]], float)
    p3 = stats.bradley_terry(w3)
    n = w3 + w3.T
    assert (n * p3[:, None] / (p3[:, None] + p3[None, :])).sum(axis=1) == pytest.approx(w3.sum(axis=1), rel=1e-6)
    assert p3.sum() == pytest.approx(1) and p3[0] > p3[1] > p3[2]
    with pytest.raises(ValueError):
        stats.win_matrix([("a", "a")])


def _row(participant, trial, kind, method_a, rating=None, choice=None, method_b="", attention=False):
    preferred = "" if choice is None else (method_a if choice == 0 else method_b)
    return {"participant": participant, "trial": trial, "kind": kind, "method_a": method_a, "method_b": method_b,
            "attention_check": attention, "rating": rating, "choice": choice, "preferred_method": preferred,
            "comment": ""}


def test_analyse_flags_and_excludes_attention_failures():
    rows = []
    for p, (r_sobol, r_rise, r_check) in enumerate([(5, 2, 1), (4, 2, 2), (1, 5, 5)]):
        rows += [_row(p, 1, "likert", "sobol", r_sobol), _row(p, 2, "likert", "rise", r_rise),
                 _row(p, 3, "likert", "attention_check", r_check, attention=True),
                 _row(p, 4, "pairwise", "sobol", choice=0 if p < 2 else 1, method_b="rise")]
    res = analyse(rows, exclude_failed=True)
    assert res["failed"] == {2: 1}
    by = {r["method"]: r for r in res["ratings"]}
    assert by["sobol"]["mean"] == 4.5 and by["rise"]["mean"] == 2.0 and by["sobol"]["n"] == 2
    assert res["items"] == ["rise", "sobol"] and res["wins"].tolist() == [[0, 0], [2, 0]]
    # units (5,4) and (2,2): n_2=2, n_4=n_5=1, n=4; d2(4,5)=1, d2(2,4)=2.25, d2(2,5)=6.25;
    # D_o = 2*1, sum n_c n_k d2 = 2*(2*2.25 + 2*6.25 + 1) = 36 -> alpha = 1 - 3*2/36 = 5/6
    assert res["alpha"] == pytest.approx(5 / 6)
    kept_all = analyse(rows, exclude_failed=False)
    assert kept_all["wins"].tolist() == [[0, 1], [2, 0]] and kept_all["alpha"] < 0.5


def test_csv_is_formula_safe():
    out = to_csv([{"comment": "=HYPERLINK(\"x\")", "rating": 3}]).decode()
    assert out.splitlines()[1].startswith("\"'=HYPERLINK")
