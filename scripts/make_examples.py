"""Write the bundled example photographs (from scikit-image, offline) to assets/examples/."""
from pathlib import Path

from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLES = {"cat": data.chelsea, "coffee": data.coffee, "rocket": data.rocket, "astronaut": data.astronaut,
            "motorcycle": lambda: data.stereo_motorcycle()[0]}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, load in EXAMPLES.items():
        img = Image.fromarray(load()).convert("RGB")
        img.thumbnail((512, 512))
        img.save(OUT / f"{name}.png", optimize=True)
        print(OUT / f"{name}.png", img.size)
