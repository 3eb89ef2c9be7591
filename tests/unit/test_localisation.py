"""The localisation benchmark's scenes and scores (bench/localisation.py prints the table)."""
import numpy as np
import pytest

from evaluation.localisation import energy_in_box, pointing_hit, scenes
from evaluation.controls import control_map, edge_map
from models import load_model


@pytest.fixture(scope="module")
def data():
    return scenes(load_model("efficientnet_lite0", device="cpu"), n=6, seed=0)


def test_scenes_are_reproducible_off_centre_and_seen_by_the_model(data):
    again = scenes(load_model("efficientnet_lite0", device="cpu"), n=6, seed=0)
    assert [s.name for s in data] == [s.name for s in again]
    assert all(np.array_equal(a.image, b.image) and a.box == b.box for a, b in zip(data, again))
    assert all(s.image.shape == (224, 224, 3) and s.image.dtype == np.uint8 for s in data)
    assert all(0.05 < s.box_fraction < 0.3 for s in data)
    # not every box holds the centre, and some scenes hold a distractor
    assert any(not (s.box[0] <= 112 < s.box[2] and s.box[1] <= 112 < s.box[3]) for s in data)
    assert any("+" in s.name for s in data)


def test_energy_in_box_ignores_offsets_and_gives_a_constant_map_chance():
    box = (10, 20, 30, 60)                      # 20 x 40 of 100 x 100: 0.08 of the image
    inside = np.zeros((100, 100))
    inside[10:30, 20:60] = 1.0
    assert energy_in_box(inside, box) == pytest.approx(1.0)
    assert energy_in_box(inside + 1000.0, box) == pytest.approx(1.0)       # a constant offset changes nothing
    assert energy_in_box(inside - 5.0, box) == pytest.approx(1.0)          # nor does a negative one
    assert energy_in_box(np.full((100, 100), 7.0), box) == pytest.approx(0.08)   # no signal: chance
    assert energy_in_box(np.random.default_rng(0).random((100, 100)), box) < 0.1
    assert pointing_hit(inside, box) and not pointing_hit(np.full((100, 100), 1.0), box)
    # a signed map: evidence against the class elsewhere is not mass above the background (the median) ...
    signed = inside.copy()
    signed[60:80, 60:80] = -3.0
    assert energy_in_box(signed, box) == pytest.approx(1.0)
    # ... while above the minimum it is
    assert energy_in_box(signed, box, reference="min") < 0.5


def test_controls_know_nothing_of_the_target(data):
    for s in data:
        assert energy_in_box(control_map("blocks", (224, 224), 0), s.box) < 0.5
        edges = edge_map(s.image)
        assert edges.shape == (224, 224) and edges.min() >= 0
