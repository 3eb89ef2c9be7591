"""Procedural sound-event clips with ground-truth time-frequency masks (training data and tests, issue 6).

Each clip is 2 s at 16 kHz: coloured background noise (white, pink or brown) plus one event of one of six
classes at a random time, frequency and SNR. The mask marks the (F_mel, T) cells where the event's mel power
exceeds the background's, i.e. where the event's energy is. Everything is a deterministic function of the seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import LABELS, AudioFrontend

SNR_DB = (0.0, 20.0)   # event RMS (over its duration) over background RMS


@dataclass
class SoundEventSet:
    waves: np.ndarray    # (N, L) float32 mixtures
    labels: np.ndarray   # (N,) int64 class indices into LABELS
    masks: np.ndarray    # (N, F, T) bool ground truth


def _tone(phase_hz: np.ndarray, sr: int) -> np.ndarray:
    return np.sin(2 * np.pi * np.cumsum(phase_hz) / sr)


def _envelope(n: int, sr: int, ramp_s: float = 0.005) -> np.ndarray:
    r = max(1, min(n // 2, int(ramp_s * sr)))
    env = np.ones(n)
    env[:r] = np.linspace(0, 1, r)
    env[-r:] = np.linspace(1, 0, r)
    return env


def _bandpass_noise(rng, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n)


def _event(cls: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One event waveform (unit RMS) of class ``cls``; durations and frequencies drawn from ``rng``."""
    if cls == "beep":            # steady tone
        n = int(rng.uniform(0.15, 0.6) * sr)
        x = _tone(np.full(n, np.exp(rng.uniform(np.log(300), np.log(4000)))), sr)
    elif cls == "chirp":         # monotonic log sweep, up or down, over at least an octave
        n = int(rng.uniform(0.25, 0.8) * sr)
        a, b = np.exp(rng.uniform(np.log(200), np.log(1500))), np.exp(rng.uniform(np.log(2400), np.log(6000)))
        if rng.random() < 0.5:
            a, b = b, a
        x = _tone(a * (b / a) ** np.linspace(0, 1, n), sr)
    elif cls == "click_train":   # short broadband clicks at 8-30 per second
        n = int(rng.uniform(0.3, 0.9) * sr)
        rate = rng.uniform(8, 30)
        x = np.zeros(n)
        click = _bandpass_noise(rng, int(0.003 * sr), sr, 500, 7500) * np.hanning(int(0.003 * sr))
        for t in np.arange(0, n - click.size, sr / rate).astype(int):
            x[t:t + click.size] += click
    elif cls == "noise_burst":   # band of noise, one steady burst
        n = int(rng.uniform(0.1, 0.6) * sr)
        lo = np.exp(rng.uniform(np.log(200), np.log(3000)))
        x = _bandpass_noise(rng, n, sr, lo, min(7800, lo * rng.uniform(1.5, 4)))
    elif cls == "siren":         # slow, wide frequency modulation (0.8-3 Hz)
        n = int(rng.uniform(0.8, 1.4) * sr)
        fc, depth, rate = rng.uniform(600, 2000), rng.uniform(0.25, 0.45), rng.uniform(0.8, 3)
        t = np.arange(n) / sr
        x = _tone(fc * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))), sr)
    elif cls == "trill":         # fast alternation between two notes (10-20 Hz)
        n = int(rng.uniform(0.3, 0.9) * sr)
        f1 = np.exp(rng.uniform(np.log(400), np.log(3500)))
        f2, rate = f1 * rng.uniform(1.15, 1.5), rng.uniform(10, 20)
        t = np.arange(n) / sr
        x = _tone(np.where(np.sin(2 * np.pi * rate * t) >= 0, f1, f2), sr)
    else:
        raise ValueError(f"unknown sound-event class {cls!r}")
    x = x * _envelope(n, sr)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """White, pink or brown noise at unit RMS (spectral slope 0, -1 or -2 in power)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    spec *= f ** (-0.5 * rng.choice([0, 1, 2]))
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x ** 2))


def make_clip(label: int, rng: np.random.Generator, frontend: AudioFrontend, snr_db: float | None = None):
    """One mixture: (mixture, event alone, background alone) as float32 clip-length waveforms."""
    L, sr = frontend.clip_samples, frontend.sample_rate
    ev = _event(LABELS[label], rng, sr)
    start = int(rng.integers(0, L - ev.size + 1))
    noise_rms = 10 ** rng.uniform(-3.0, -1.6)            # background level -60 .. -32 dBFS
    snr = rng.uniform(*SNR_DB)
    snr = snr if snr_db is None else snr_db
    event = np.zeros(L)
    event[start:start + ev.size] = ev * noise_rms * 10 ** (snr / 20)
    bg = _background(rng, L) * noise_rms
    mix = event + bg
    peak = np.abs(mix).max()
    if peak > 0.99:                                       # keep within full scale
        mix, event, bg = mix * 0.99 / peak, event * 0.99 / peak, bg * 0.99 / peak
    return mix.astype(np.float32), event.astype(np.float32), bg.astype(np.float32)


def generate(n_per_class: int, seed: int, frontend: AudioFrontend | None = None) -> SoundEventSet:
    """``n_per_class`` clips of each class, shuffled; deterministic in ``seed``."""
    fe = frontend or AudioFrontend(device="cpu")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(LABELS)), n_per_class))
    mixes, events, bgs = zip(*(make_clip(int(k), rng, fe) for k in labels))
    masks = event_masks(np.stack(events), np.stack(bgs), fe)
    return SoundEventSet(np.stack(mixes), labels.astype(np.int64), masks)


def event_masks(events: np.ndarray, backgrounds: np.ndarray, fe: AudioFrontend, chunk: int = 256) -> np.ndarray:
    """Cells where the event's mel power exceeds the background's and is above the silence floor."""
    out = []
    for i in range(0, len(events), chunk):
        pe, pb = fe.mel_power(events[i:i + chunk]), fe.mel_power(backgrounds[i:i + chunk])
        m = (pe > pb) & (fe.normalise(pe) > 0)
        out.append(m.cpu().numpy())
    return np.concatenate(out)


def write_examples(out_dir, seed: int = 7, frontend: AudioFrontend | None = None) -> list[dict]:
    """One 16-bit WAV per class with its (F, T) bool mask (.npy) and ``manifest.json`` in ``out_dir``."""
    import json
    from pathlib import Path

    import soundfile as sf
    fe = frontend or AudioFrontend(device="cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for k, name in enumerate(LABELS):
        mix, ev, bg = make_clip(k, rng, fe, snr_db=12.0)  # clearly audible examples
        sf.write(out / f"{name}.wav", mix, fe.sample_rate, subtype="PCM_16")
        mask = event_masks(ev[None], bg[None], fe)[0]
        np.save(out / f"{name}_mask.npy", mask)
        entries.append({"file": f"{name}.wav", "label": name, "class_index": k, "mask": f"{name}_mask.npy",
                        "sample_rate": fe.sample_rate, "seconds": fe.clip_seconds})
    (out / "manifest.json").write_text(json.dumps({"seed": seed, "clips": entries}, indent=2) + "\n")
    return entries
