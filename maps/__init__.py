"""Saliency maps as pictures and files: min-max scaling, colour maps, the overlay image, PNG and ``.npy`` bytes.

One rendering for every client: the Explore download, the Compare ZIP, the study's stimuli and the benches all
draw a map the same way. numpy and PIL only (matplotlib's colour tables are read on first use), so the
compute core, the exports and the pages can all import it.
"""
from maps.files import load_npy, npy_bytes, png_bytes
from maps.render import COLORMAPS, colourise, overlay_image, overlay_png
from maps.scale import normalise, resize

__all__ = ["COLORMAPS", "colourise", "load_npy", "normalise", "npy_bytes", "overlay_image", "overlay_png",
           "png_bytes", "resize"]
