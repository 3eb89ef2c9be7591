"""Shared fixtures: the real bundled model, the tiny CNN, real photographs."""
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Tests never read or pollute the user's result cache.
os.environ.setdefault("SALIENCY_CACHE_DIR", tempfile.mkdtemp(prefix="saliency-test-cache-"))


@pytest.fixture(scope="session")
def effnet():
    from models import load_model
    return load_model("efficientnet_lite0", device="cpu")


@pytest.fixture()
def tiny():
    from models import load_model
    return load_model("tiny_cnn", device="cpu")


@pytest.fixture(scope="session")
def cat_image():
    from PIL import Image
    from skimage import data
    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def coffee_image():
    from PIL import Image
    from skimage import data
    return Image.fromarray(data.coffee())


@pytest.fixture(scope="session")
def cat_x(effnet, cat_image):
    return effnet.preprocess(cat_image)
