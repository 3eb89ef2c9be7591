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
