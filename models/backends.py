"""Where a torch model's queries run: torch as it is, ONNX Runtime on an exported copy, or ``torch.compile``.

A query-only method spends its whole time in the model's forward passes (``bench/overhead.py``), so the
forward pass is where the speed is. ``use_backend(bb, "auto")`` exports the model to ONNX once (cached by
model id and torch version), checks the copy against torch on a probe batch, times both and keeps the faster;
every failure falls back to torch with the reason in ``bb.backend_note``. The torch module stays on the
BlackBox for the white-box references and autograd; only the queries move.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .base import BlackBox, cache_root
from .tuning import fastest

BACKENDS = ("auto", "torch", "onnxruntime", "compile")
# Largest difference from torch's raw outputs accepted on the probe batch, relative to the outputs' scale (at
# least 1). The bundled EfficientNet-Lite0's ONNX copy differs by about 1e-5 (docs/measurements.md, backends).
TOLERANCE = 1e-4
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend could not serve this model; the message says why (the caller falls back or reports it)."""


class OnnxRunner:
    """An ONNX Runtime session as a callable ``(N, C, H, W) float tensor -> (N, K) tensor`` on the CPU.

    Reads what the model declares: one input of rank 4, channels first or last (``layout``), its dtype, and a
    batch axis that is either symbolic or fixed (then every call is served in chunks of that size, the last one
    padded).
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None, providers: Sequence[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("ONNX Runtime is not installed (pip install onnxruntime)") from None
        self.version = ort.__version__
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.threads = opts.intra_op_num_threads
        source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        available = ort.get_available_providers()
        providers = [p for p in (providers or ("CUDAExecutionProvider", "CPUExecutionProvider")) if p in available]
        try:
            self.session = ort.InferenceSession(source, opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"Not an ONNX model ONNX Runtime can load ({first[:240]}).") from None
        self.providers = self.session.get_providers()
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise BackendError(f"The ONNX model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                               "a classifier with one image or spectrogram input (N, C, H, W) is needed.")
        inp = inputs[0]
        if len(inp.shape) != 4:
            raise BackendError(f"The ONNX model's input {inp.name!r} has shape {inp.shape}; an image or "
                               "spectrogram tensor of rank 4, (N, C, H, W) or (N, H, W, C), is needed.")
        if inp.type not in _ORT_TYPES:
            raise BackendError(f"The ONNX model's input {inp.name!r} is {inp.type}; a float tensor is needed.")
        self.input_name, self.output_name = inp.name, outputs[0].name
        self.dtype = _ORT_TYPES[inp.type]
        dims = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        self.fixed_batch = dims[0]
        # channels last when the last axis looks like channels and the second does not
        self.layout = "NHWC" if dims[3] in (1, 3, 4) and dims[1] not in (1, 3, 4) else "NCHW"
        self.declared_shape = tuple(dims[1:]) if self.layout == "NCHW" else (dims[3], dims[1], dims[2])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32)
        if self.layout == "NHWC":
            arr = arr.permute(0, 2, 3, 1)
        arr = np.ascontiguousarray(arr.numpy(), dtype=self.dtype)
        n, step = arr.shape[0], self.fixed_batch or arr.shape[0]
        outs = []
        for i in range(0, n, step):
            chunk = arr[i:i + step]
            if chunk.shape[0] < step:   # a fixed batch axis: pad the last chunk, keep its rows
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - chunk.shape[0], 0)])
            outs.append(self.session.run([self.output_name], {self.input_name: chunk})[0][:n - i])
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def onnx_file(bb: BlackBox) -> Path:
    """The model exported to ONNX (opset 18, dynamic batch axis), made once per model id and torch version."""
    if bb.module is None or bb.input_shape is None:
        raise BackendError("only an open torch model with a declared input shape can be exported")
    tag = hashlib.sha256(f"{bb.name}|{torch.__version__}|{bb.input_shape}".encode()).hexdigest()[:16]
    path = cache_root() / "onnx" / f"{bb.name.replace(':', '_').replace('/', '_')}-{tag}.onnx"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    module = bb.module.to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, *bb.input_shape, device=bb.device)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if isinstance(module, torch.jit.ScriptModule):   # the dynamo exporter does not take TorchScript
                torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=18,
                                  input_names=["input"], output_names=["scores"],
                                  dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}})
            else:
                program = torch.onnx.export(module, (example,), dynamo=True, opset_version=18,
                                            input_names=["input"], output_names=["scores"],
                                            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
                program.save(str(tmp), external_data=False)
        tmp.replace(path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"ONNX export failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})") \
            from None
    finally:
        if bb._channels_last:
            bb.module.to(memory_format=torch.channels_last)
    return path


def check_outputs(reference: Callable[[torch.Tensor], torch.Tensor], candidate: Callable[[torch.Tensor], torch.Tensor],
                  input_shape: Sequence[int], device: torch.device, tolerance: float = TOLERANCE) -> float:
    """Max abs difference of ``candidate`` from ``reference`` on a probe batch, scaled by the outputs' size;
    BackendError when it passes ``tolerance`` or a top-1 class differs."""
    g = torch.Generator().manual_seed(0)
    probe = torch.cat([torch.zeros(1, *input_shape), torch.randn(3, *input_shape, generator=g)]).to(device)
    with torch.inference_mode():
        ref = reference(probe).float().cpu()
        got = candidate(probe).float().cpu()
    if got.shape != ref.shape:
        raise BackendError(f"outputs of shape {tuple(got.shape)} instead of torch's {tuple(ref.shape)}")
    diff = float((got - ref).abs().max()) / max(1.0, float(ref.abs().max()))
    if not diff <= tolerance:
        raise BackendError(f"outputs differ from torch by {diff:.2e} (tolerance {tolerance:.0e})")
    if not torch.equal(got.argmax(1), ref.argmax(1)):
        raise BackendError("top-1 classes differ from torch on the probe batch")
    return diff


class Padded:
    """Serve every call at one batch size (``torch.compile`` with static shapes compiles one graph per size)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], batch: int):
        self.fn, self.batch = fn, batch

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, x.shape[0], self.batch):
            chunk = x[i:i + self.batch]
            k = chunk.shape[0]
            if k < self.batch:
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch - k, *chunk.shape[1:])])
            outs.append(self.fn(chunk)[:k])
        return torch.cat(outs)


def _compiled(bb: BlackBox) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        fn = torch.compile(bb.module, dynamic=False)
    except Exception as e:
        raise BackendError(f"torch.compile is not available ({type(e).__name__}: {e})") from None
    return Padded(fn, bb.batch_size)


def use_backend(bb: BlackBox, backend: str = "auto", threads: int | None = None) -> BlackBox:
    """Serve ``bb``'s queries on ``backend``; sets ``bb.backend`` to the one actually used and
    ``bb.backend_note`` to why (the check's figure, or the reason for falling back to torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if bb.module is None or backend == "torch":
        return bb
    if backend == "auto" and bb.device.type != "cpu":
        bb.backend_note = f"torch on {bb.device.type} (ONNX Runtime is tried on the CPU only)"
        return bb
    torch_forward = bb._torch_chunk
    try:
        if backend == "compile":
            runner = _compiled(bb)
            diff = check_outputs(torch_forward, runner, bb.input_shape, bb.device)
            bb.set_runner(runner, "compile", note=f"torch.compile, outputs within {diff:.1e} of torch")
            return bb
        path = onnx_file(bb)
        runners = {t: OnnxRunner(path, threads=t) for t in thread_choices(threads)}
        diff = check_outputs(torch_forward, runners[min(runners)], bb.input_shape, bb.device)
    except BackendError as e:
        tried = "torch.compile" if backend == "compile" else "ONNX Runtime"
        bb.backend_note = f"torch ({tried} not used: {e})"
        log.warning("%s: %s", bb.name, bb.backend_note)
        return bb
    candidates = {("onnxruntime", t): r for t, r in runners.items()}
    if backend == "auto":
        candidates[("torch", torch.get_num_threads())] = torch_forward
    first = runners[min(runners)]
    best = fastest(candidates, bb.input_shape, bb.device,
                   key=f"{bb.name}|{bb.device}|torch {torch.__version__}|ort {first.version}",
                   cache_dir=cache_root())
    if best.backend == "onnxruntime":
        faster = f"; {best.speedup:.1f}x torch's speed here" if backend == "auto" else ""
        bb.set_runner(runners[best.threads], "onnxruntime", batch_size=best.batch,
                      note=f"ONNX Runtime, {_threads(best.threads)}, batch {best.batch}, outputs within {diff:.1e} "
                           f"of torch{faster}")
    else:
        bb.backend_note = f"torch (measured {best.speedup:.1f}x ONNX Runtime's speed here)"
        bb.batch_size = best.batch
    return bb


def interactive_threads() -> int | None:
    """ONNX Runtime threads for a model behind the web app: on a machine of up to 4 cores, one core is left to
    the page and the browser (on 2 cores, a run watched at 2 threads took 1.5x its headless time, at 1 thread
    1.1x: docs/measurements.md, "Watching a run"); None (measured, as everywhere else) on larger machines or
    when ``$SALIENCY_THREADS`` says otherwise."""
    n = os.cpu_count() or 1
    if os.environ.get("SALIENCY_THREADS") or n > 4:
        return None
    return max(1, n - 1)


def _threads(n: int) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def thread_choices(threads: int | None = None) -> list[int]:
    """The intra-op thread counts to time: the one asked for, else 1, 2, 4 ... up to the CPU count (at most 8).

    One thread is always a candidate: with another job on a small machine, more threads than free cores made
    torch 5-66x slower (issue 17)."""
    if threads:
        return [int(threads)]
    top = min(os.cpu_count() or 1, 8)
    return [t for t in (1, 2, 4, 8) if t <= top]
