"""Regenerate the synthetic sound-event data and train the bundled audio CNN reproducibly (issue 6).

    .venv/bin/python scripts/train_sound_events.py            # writes assets/models/sound_events.{pt,json}

Fixed seeds (train seed 1, test seed 2: a held-out set from another seed), 2 torch threads, CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.audio import CARD, LABELS, WEIGHTS, AudioFrontend, SoundEventCNN  # noqa: E402
from models.sound_events_data import generate  # noqa: E402


def accuracy(net, x, y, bs=256) -> float:
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(x[i:i + bs]).argmax(1) for i in range(0, len(x), bs)])
    return float((pred == y).float().mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-per-class", type=int, default=400)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.time()
    fe = AudioFrontend(device="cpu")
    train, test = generate(args.train_per_class, seed=1, frontend=fe), generate(args.test_per_class, seed=2, frontend=fe)
    xtr, ytr = fe.spectrogram(train.waves), torch.from_numpy(train.labels)
    xte, yte = fe.spectrogram(test.waves), torch.from_numpy(test.labels)
    print(f"data: {len(xtr)} train, {len(xte)} test clips in {time.time() - t0:.0f} s", flush=True)

    net = SoundEventCNN(len(LABELS), args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps_per_epoch = (len(xtr) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * steps_per_epoch)
    def save(acc: float):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), args.out)
        card = {
            "labels": LABELS, "width": args.width, "frontend": fe.config(),
            "input": "log-mel, (clip(dB, -80, 0) + 80) / 80; 0 = silence",
            "test_accuracy": round(acc, 4), "test_clips": len(xte), "train_clips": len(xtr),
            "train_seed": 1, "test_seed": 2,
            "training_command": "python scripts/train_sound_events.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "training_seconds": round(time.time() - t0, 1),
        }
        (args.out.with_suffix(".json") if args.out != WEIGHTS else CARD).write_text(json.dumps(card, indent=2) + "\n")

    g = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            xb = xtr[idx]
            # time shift augmentation (roll): events may sit anywhere in the clip
            xb = torch.roll(xb, int(torch.randint(-20, 21, (1,), generator=g)), dims=3)
            loss = torch.nn.functional.cross_entropy(net(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(net, xte, yte)
        save(acc)  # each epoch, so an interrupted run still leaves consistent weights and card
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test acc {acc:.3f} ({time.time() - t0:.0f} s)", flush=True)

    print(f"test accuracy {acc:.4f}; wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB) in "
          f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
