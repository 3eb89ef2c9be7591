"""Overhead of the remote path (HttpBlackBox -> models.serve on loopback) against the local model, same queries.

For each model and input encoding, one RISE run (Petsiuk et al., BMVC 2018: every mask is a distinct input, so the
cache never helps) on the cat photo is timed twice in this process: on the local BlackBox and through a
``python -m models.serve`` subprocess on 127.0.0.1. Prints a Markdown table of wall times and their ratio.

    .venv/bin/python bench/remote_overhead.py --threads 1
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from explainers import get_explainer  # noqa: E402
from models import HttpBlackBox, load_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "models.serve", model, "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--max-batch", str(max_batch)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/info", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"models.serve {model} exited with {proc.returncode}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not come up")


def timed_rise(bb, x, n_masks: int) -> tuple[float, torch.Tensor]:
    e = get_explainer("rise", seed=0, n_masks=n_masks, grid_size=7)
    t0 = time.perf_counter()
    sal = e.explain(bb, x, None)
    return time.perf_counter() - t0, sal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads, client and server alike")
    ap.add_argument("--models", nargs="+", default=["tiny_cnn", "efficientnet_lite0"])
    ap.add_argument("--queries", type=int, nargs="+", default=[2048, 128], help="RISE masks per model")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved local/remote runs; the best of each")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from PIL import Image
    cat = Image.open(ROOT / "assets/examples/cat.png")
    rows = []
    for model, n in zip(args.models, args.queries * len(args.models)):
        local = load_model(model, device="cpu")
        x = local.preprocess(cat)
        max_batch = local.batch_size * 4
        timed_rise(local.view(), x, 64)                              # warm-up
        proc, url = start_server(model, args.threads, max_batch)
        try:
            for encoding in ("tensor", "png"):
                # the same request size as the local batch size, so both paths make the same forward calls
                bb = HttpBlackBox(url, api_key_env=None, encoding=encoding, cache_size=0,
                                  concurrency=args.concurrency, request_size=local.batch_size)
                timed_rise(bb.view(), x, 64)                         # warm-up (connections, server batch size)
                # local and remote interleaved, best of --repeats each: a shared machine's load hits both
                t_local = t_remote = float("inf")
                for _ in range(args.repeats):
                    t, sal_local = timed_rise(local.view(), x, n)
                    t_local = min(t_local, t)
                    v = bb.view()
                    t, sal = timed_rise(v, x, n)
                    t_remote = min(t_remote, t)
                same = float(torch.corrcoef(torch.stack([sal.flatten(), sal_local.flatten()]))[0, 1])
                rows.append((model, encoding, v.queries, v.remote_queries, t_local, t_remote, same))
                bb.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"RISE on the cat photo, loopback, {args.threads} torch thread(s) per side (the server is a second "
          f"process), {args.concurrency} parallel requests, best of {args.repeats}\n")
    print("| model | encoding | queries (remote) | local s | remote s | remote / local | extra ms per query | "
          "map corr. with local |")
    print("|---|---|---|---|---|---|---|---|")
    for model, enc, q, rq, tl, tr, same in rows:
        print(f"| {model} | {enc} | {q} ({rq}) | {tl:.2f} | {tr:.2f} | {tr / tl:.2f}x | "
              f"{(tr - tl) / q * 1e3:.2f} | {same:.4f} |")


if __name__ == "__main__":
    main()
