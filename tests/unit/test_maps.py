"""maps: one min-max, one overlay, one set of file bytes for the exports, the pages and the study."""
import io
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from maps import load_npy, normalise, npy_bytes, overlay_image, overlay_png, png_bytes


def test_normalise_arrays_and_tensors_alike():
    a = np.array([[1.0, 3.0], [2.0, 5.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise(a), [[0, 0.5], [0.25, 1]])
    t = normalise(torch.tensor(a))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([[0, 0.5], [0.25, 1]]))
    assert not normalise(np.full((2, 2), 7.0)).any() and not normalise(torch.full((2, 2), 7.0)).any()
    assert normalise(np.array([[np.nan, 1.0], [0.0, 2.0]]))[0, 0] == 0       # a display never shows NaN
    assert normalise(a.astype(np.float64)).dtype == np.float64              # the caller's precision is kept


def test_overlay_blends_the_colour_mapped_map_over_the_image():
    bg = np.zeros((4, 6, 3), np.uint8)
    sal = np.zeros((4, 6), np.float32)
    sal[0, 0] = 1.0
    img = overlay_image(bg, sal, opacity=1.0, colormap="gray")
    arr = np.asarray(img)
    assert arr.shape == (4, 6, 3) and arr[0, 0].tolist() == [255] * 3 and arr[1, 1].tolist() == [0] * 3
    png = overlay_png(bg, np.kron(sal, np.ones((2, 2), np.float32)))      # another size: resized to the image
    assert Image.open(io.BytesIO(png)).size == (6, 4)


def test_file_bytes_round_trip():
    sal = np.arange(6, dtype=np.float64).reshape(2, 3)
    back = load_npy(npy_bytes(sal))
    assert back.dtype == np.float32 and np.array_equal(back, sal)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)


def test_import_needs_neither_torch_nor_streamlit():
    code = "import sys, maps; assert 'torch' not in sys.modules and 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
