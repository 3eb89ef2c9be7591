"""Loading a user's model: a TorchScript file with a declared input size and labels, or a torchvision
architecture by name (weights from the torch hub cache, downloaded where the network allows)."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import torch

from .base import BlackBox, pick_device
from .images import ImageTransform
from .labels import imagenet_labels


def _last_line(e: Exception) -> str:
    """TorchScript errors put the cause on their last line, after a traceback of the scripted code."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to do."""


def load_torchscript(source: str | Path | bytes, input_shape: Sequence[int], labels: Sequence[str] | None = None,
                     *, name: str | None = None, outputs: str = "logits", score_mode: str = "prob",
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), modality: str = "image",
                     preprocess=None, device=None) -> BlackBox:
    """A TorchScript model saved with ``torch.jit.save``; checked with one forward pass of the declared shape."""
    device_t = pick_device(device)
    try:
        raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        module = torch.jit.load(io.BytesIO(raw), map_location=device_t)
    except Exception as e:  # torch raises RuntimeError/ValueError/zipfile errors for non-TorchScript files
        raise ModelLoadError(f"Not a TorchScript model ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                             "Save it with torch.jit.save(torch.jit.script(model), 'model.pt').") from None
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ModelLoadError(f"input shape must be (C, H, W) with positive sizes, got {input_shape}")
    try:
        with torch.inference_mode():
            out = module(torch.zeros(1, *input_shape, device=device_t))
    except Exception as e:
        raise ModelLoadError(f"The model failed on an input of shape (1, {', '.join(map(str, input_shape))}): "
                             f"{_last_line(e)}. Check the declared input size.") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ModelLoadError(f"The model must return a (N, K) tensor of scores; it returned "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
    k = out.shape[1]
    if labels is not None and len(labels) != k:
        raise ModelLoadError(f"{len(labels)} labels were given but the model returns {k} scores.")
    if preprocess is None and modality == "image":
        if input_shape[1] != input_shape[2]:
            tf = ImageTransform(max(input_shape[1:]), mean=mean[:input_shape[0]], std=std[:input_shape[0]], crop=False)
        else:
            tf = ImageTransform(input_shape[1], mean=mean[:input_shape[0]], std=std[:input_shape[0]])
        preprocess, to_display = tf, tf.to_display
    else:
        to_display = None
    return BlackBox(module, labels=list(labels) if labels else [f"class {i}" for i in range(k)],
                    input_shape=input_shape,
                    # the file's hash names the model, so cached results of two different uploads never mix
                    name=name or f"torchscript-{hashlib.sha256(raw).hexdigest()[:12]}", outputs=outputs, score_mode=score_mode,
                    device=device_t, preprocess=preprocess, to_display=to_display, modality=modality,
                    channels_last=False)


def load_torchvision(arch: str, device=None, score_mode: str = "prob", **kw) -> BlackBox:
    """``torchvision:<arch>`` with its default ImageNet weights from the torch hub cache.

    Downloads where the network allows; otherwise fails with a message that says where to put the file.
    """
    import torchvision
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise ModelLoadError(f"torchvision has no architecture {arch!r}; see torchvision.models.list_models().") \
            from None
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    fname = Path(weights.url).name
    try:
        net = torchvision.models.get_model(arch, weights=weights)
    except Exception as e:
        raise ModelLoadError(
            f"Could not get the weights of torchvision {arch} ({type(e).__name__}). Without network access, "
            f"download {weights.url} elsewhere and copy it to {ckpt_dir / fname}, then load the model again.") \
            from None
    size = weights.transforms().crop_size[0]
    tf = ImageTransform(size, mean=weights.transforms().mean, std=weights.transforms().std)
    return BlackBox(net, labels=list(weights.meta.get("categories") or imagenet_labels()),
                    input_shape=(3, size, size), name=f"torchvision:{arch}", outputs="logits",
                    score_mode=score_mode, device=device, preprocess=tf, to_display=tf.to_display,
                    meta={"transform": tf}, **kw)
