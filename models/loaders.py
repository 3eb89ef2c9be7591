"""Loading a user's model: a TorchScript file with a declared input size and labels, or a torchvision
architecture by name (weights from the torch hub cache, downloaded where the network allows)."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import torch

from .base import BlackBox, cache_root, pick_device
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
                     preprocess=None, device=None, backend: str = "auto", threads: int | None = None) -> BlackBox:
    """A TorchScript model saved with ``torch.jit.save``; checked with one forward pass of the declared shape.

    ``backend`` as for ``load_model``: on the CPU, ``"auto"`` serves it with ONNX Runtime where it exports,
    checks out and is faster."""
    from .backends import use_backend
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
    preprocess, to_display = _display(input_shape, modality, preprocess, mean, std)
    bb = BlackBox(module, labels=list(labels) if labels else [f"class {i}" for i in range(k)],
                  input_shape=input_shape,
                  # the file's hash names the model, so cached results of two different uploads never mix
                  name=name or f"torchscript-{hashlib.sha256(raw).hexdigest()[:12]}", outputs=outputs,
                  score_mode=score_mode,
                  device=device_t, preprocess=preprocess, to_display=to_display, modality=modality,
                  channels_last=False)
    return use_backend(bb, backend, threads=threads)


def _display(input_shape, modality, preprocess, mean, std):
    """Preprocessing and display of an uploaded image model: resize (and centre-crop a square input), normalise."""
    if preprocess is not None or modality != "image":
        return preprocess, None
    c, h, w = input_shape
    tf = ImageTransform(max(h, w) if h != w else h, mean=mean[:c], std=std[:c], crop=h == w)
    return tf, tf.to_display


def _onnx_input_shape(declared, layout: str, input_shape, open_sizes) -> tuple[int, int, int]:
    """(C, H, W) from the file's fixed sizes, checked against a declared ``input_shape``, or filled from it or
    from ``open_sizes`` where the file leaves a size open."""
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ModelLoadError(f"input shape must be (C, H, W) with positive sizes, got {input_shape}")
        clash = [f"{n} {d} (declared {i})" for n, d, i in zip(("channels", "height", "width"), declared, input_shape)
                 if d is not None and d != i]
        if clash:
            raise ModelLoadError(f"The ONNX model fixes {', '.join(clash)}; declare the model's own input size.")
        return input_shape
    if None in declared and open_sizes is not None:
        return tuple(int(o) if d is None else d for d, o in zip(declared, open_sizes))
    if None in declared:
        raise ModelLoadError(f"The ONNX model leaves its input size open ({declared}, layout {layout}); "
                             "declare the input size (C, H, W).")
    return tuple(declared)


def load_onnx(source: str | Path | bytes, input_shape: Sequence[int] | None = None,
              labels: Sequence[str] | None = None, *, name: str | None = None, outputs: str = "logits",
              score_mode: str = "prob", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
              modality: str = "image", preprocess=None, threads: int | None = None,
              open_sizes: Sequence[int] | None = None) -> BlackBox:
    """An ONNX classifier served by ONNX Runtime (CUDA provider where present, else the CPU).

    The input's layout (channels first or last), dtype and static sizes are read from the file; ``input_shape``
    (C, H, W) is needed only for sizes the file leaves open, and must agree with the sizes it fixes;
    ``open_sizes`` (C, H, W) fills only the open ones (the app's form). The batch axis is probed: a model that
    fails on a batch of 2 is served one input at a time.
    """
    from .backends import BackendError, OnnxRunner, thread_choices
    from .tuning import fastest
    try:
        raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    except OSError as e:
        raise ModelLoadError(f"Could not read the ONNX file ({e}).") from None
    try:
        runners = {t: OnnxRunner(raw, threads=t) for t in thread_choices(threads)}
    except BackendError as e:
        raise ModelLoadError(f"{e} Export it with torch.onnx.export(model, example, 'model.onnx').") from None
    first = next(iter(runners.values()))
    input_shape = _onnx_input_shape(first.declared_shape, first.layout, input_shape, open_sizes)
    probe = torch.zeros(2, *input_shape)
    try:
        out = first(probe[:1])
    except Exception as e:
        raise ModelLoadError(f"The ONNX model failed on an input of shape (1, {', '.join(map(str, input_shape))}): "
                             f"{_last_line(e)}. Check the declared input size.") from None
    if out.dim() != 2:
        raise ModelLoadError(f"The model must return (N, K) scores; its first output has shape {tuple(out.shape)}.")
    if first.fixed_batch is None:
        try:
            first(probe)
        except Exception:   # a symbolic batch axis that only takes 1 (a reshape with the batch baked in)
            for r in runners.values():
                r.fixed_batch = 1
    k = out.shape[1]
    if labels is not None and len(labels) != k:
        raise ModelLoadError(f"{len(labels)} labels were given but the model returns {k} scores.")
    name = name or f"onnx-{hashlib.sha256(raw).hexdigest()[:12]}"
    best = fastest({("onnxruntime", t): r for t, r in runners.items()}, input_shape, torch.device("cpu"),
                   key=f"{name}|ort providers {first.providers}", cache_dir=cache_root())
    preprocess, to_display = _display(input_shape, modality, preprocess, mean, std)
    bb = BlackBox(runners[best.threads], labels=list(labels) if labels else [f"class {i}" for i in range(k)],
                  input_shape=input_shape, name=name, outputs=outputs, score_mode=score_mode,
                  preprocess=preprocess, to_display=to_display, modality=modality,
                  meta={"providers": first.providers, "layout": first.layout, "fixed_batch": first.fixed_batch})
    bb.set_runner(runners[best.threads], "onnxruntime", batch_size=best.batch,
                  note=f"ONNX Runtime ({', '.join(first.providers)}), {best.threads} thread{'' if best.threads == 1 else 's'}, "
                       f"batch {best.batch}"
                       + (", one input per call (fixed batch axis)" if first.fixed_batch == 1 else ""))
    return bb


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
