"""Per-query forward time of the bundled model on every backend this machine has, interleaved in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/backends.py            # efficientnet_lite0 on the CPU
    .venv/bin/python bench/backends.py --model tiny_cnn --reps 5 --threads 2

Rows: the reference path (torch, channels-last, ``--batch``, the project's path before ONNX Runtime), the
default path (``load_model(..., backend="auto")``: what the app and the benches use), and the alternatives
(ONNX Runtime at each thread count, torch.compile, bf16, TorchScript trace, ONNX Runtime int8). Every row
serves the same 64 noisy copies of the cat, in turn, round after round, best of ``--reps``; the outputs are
checked against torch (max abs logit difference over those inputs, top-1 agreement on the five bundled
example photos). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import load_model  # noqa: E402
from models.backends import OnnxRunner, Padded, onnx_file, thread_choices  # noqa: E402


def chunked(fn, bs):
    def run(x):
        return torch.cat([fn(x[i:i + bs]) for i in range(0, x.shape[0], bs)])
    return run


def rows(bb, auto, batch: int, threads: int | None) -> list[tuple[str, object]]:
    net = bb.module
    out = [(f"torch, channels-last, batch {batch} (reference)", chunked(bb._torch_chunk, batch)),
           (f"default: load_model(backend='auto') -> {auto.backend}, batch {auto.batch_size}", auto.forward_raw)]
    path = onnx_file(bb)
    for t in thread_choices(threads):
        out.append((f"ONNX Runtime, {t} thread(s), batch {batch}", chunked(OnnxRunner(path, threads=t), batch)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from onnxruntime.quantization import QuantType, quantize_dynamic
            q = Path(tempfile.mkdtemp()) / "int8.onnx"
            quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8)
        out.append((f"ONNX Runtime int8 (dynamic quantisation), batch {batch}", chunked(OnnxRunner(q, threads=threads or 1), batch)))
    except Exception as e:  # noqa: BLE001 - a bench row that cannot be built is reported, not fatal
        print(f"no int8 row: {type(e).__name__}: {e}", file=sys.stderr)
    try:
        compiled = torch.compile(net, dynamic=False)
        out.append((f"torch.compile (inductor, static shapes), batch {batch}",
                    chunked(Padded(lambda c: compiled(c.contiguous(memory_format=torch.channels_last)), batch), batch)))
    except Exception as e:  # noqa: BLE001
        print(f"no torch.compile row: {type(e).__name__}: {e}", file=sys.stderr)

    def bf16(c):
        with torch.autocast(bb.device.type, dtype=torch.bfloat16):
            return net(c.contiguous(memory_format=torch.channels_last)).float()
    out.append((f"torch bf16 autocast, channels-last, batch {batch}", chunked(bf16, batch)))
    with torch.inference_mode():
        traced = torch.jit.freeze(torch.jit.trace(net, torch.zeros(batch, *bb.input_shape, device=bb.device)
                                                  .contiguous(memory_format=torch.channels_last), check_trace=False))
    out.append((f"TorchScript trace + freeze, batch {batch}",
                chunked(Padded(lambda c: traced(c.contiguous(memory_format=torch.channels_last)), batch), batch)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime thread count (default: 1, 2, ... cores)")
    args = ap.parse_args()
    bb = load_model(args.model, device="cpu", backend="torch")
    auto = load_model(args.model, device="cpu", backend="auto")
    cat = Image.open(ROOT / "assets" / "examples" / "cat.png")
    x = bb.preprocess(cat) if bb.input_shape[1] >= 64 else torch.zeros(bb.input_shape)
    batch = x.unsqueeze(0) + 0.1 * torch.randn(64, *x.shape, generator=torch.Generator().manual_seed(0))
    examples = torch.stack([bb.preprocess(Image.open(p)) for p in sorted((ROOT / "assets" / "examples").glob("*.png"))])
    table = rows(bb, auto, args.batch, args.threads)
    best = {name: float("inf") for name, _ in table}
    with torch.inference_mode():
        ref = bb.forward_raw(batch).float()
        ref_top = bb.forward_raw(examples).argmax(1)
        checks = {name: (float((fn(batch).float() - ref).abs().max()), int((fn(examples).argmax(1) == ref_top).sum()))
                  for name, fn in table}      # also the warm-up (and torch.compile's compilation)
        for _ in range(args.reps):
            for name, fn in table:
                t0 = time.perf_counter()
                fn(batch)
                best[name] = min(best[name], time.perf_counter() - t0)
    ref_name = table[0][0]
    print(f"# {bb.name} on the CPU ({os.cpu_count()} cores), torch {torch.__version__} with "
          f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}; default backend: "
          f"{auto.backend_note or auto.backend}")
    print("| path | ms/query | / reference | max abs logit diff | top-1 on the 5 examples |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in table:
        ms = best[name] / len(batch) * 1000
        diff, agree = checks[name]
        print(f"| {name} | {ms:.1f} | {best[name] / best[ref_name]:.2f} | {diff:.1e} | {agree}/{len(examples)} |",
              flush=True)


if __name__ == "__main__":
    main()
