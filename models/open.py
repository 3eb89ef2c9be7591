"""One string names any model a script, the command line or a Ray worker can open.

A worker on another machine receives the string, not the loaded model, so the string must say everything:

- ``efficientnet_lite0``, ``sound_events``, ``torchvision:resnet18``: a registered model (``load_model``);
- ``path/to/model.onnx``: an ONNX file (``load_onnx``);
- ``path/to/model.pt`` (``.pth``, ``.ts``, ``.zip``): a TorchScript file (``load_torchscript``, input 3x224x224
  unless ``input_shape`` says otherwise);
- ``http://host:port`` or ``https://...``: a model server speaking ``models/http.py``'s protocol (``HttpBlackBox``;
  its key from ``$SALIENCY_API_KEY``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import BlackBox
from .loaders import ModelLoadError

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".zip")


def _labels_from(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        labels = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ModelLoadError(f"the labels file {path} could not be read ({e.strerror or e})") from None
    return labels or None


def open_model(spec: str, *, device=None, backend: str = "auto", threads: int | None = None,
               input_shape: Sequence[int] | None = None, labels_file: str | None = None,
               rate_limit: float | None = None) -> BlackBox:
    """The black box ``spec`` names (module docstring); ``ModelLoadError`` with the reason when it cannot open.
    ``rate_limit``: requests per second to a model server (None: as fast as it answers)."""
    from .registry import list_models, load_model
    spec = spec.strip()
    labels = _labels_from(labels_file)
    if spec.startswith(("http://", "https://")):
        from .http import HttpBlackBox
        return HttpBlackBox(spec, device=device, rate_limit=rate_limit)
    suffix = Path(spec).suffix.lower()
    if suffix == ".onnx" or suffix in TORCHSCRIPT_SUFFIXES:
        if not Path(spec).is_file():
            raise ModelLoadError(f"no model file at {spec}")
        if suffix == ".onnx":
            from .loaders import load_onnx
            return load_onnx(spec, input_shape, labels, threads=threads)
        from .loaders import load_torchscript
        return load_torchscript(spec, tuple(input_shape or (3, 224, 224)), labels, device=device, backend=backend,
                                threads=threads)
    if spec in list_models(include_hidden=True) or spec.startswith("torchvision:"):
        return load_model(spec, device=device, backend=backend, threads=threads)
    known = ", ".join(list_models())
    raise ModelLoadError(f"{spec!r} is neither a registered model ({known}), an .onnx or TorchScript file, "
                         "nor an http(s):// endpoint")
