"""The bundled audio model (issue 6): accuracy on fresh held-out clips, examples, decoding, masks, inversion."""
from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models import load_model
from models.audio import LABELS, AudioFrontend
from models.sound_events_data import generate

AUDIO = Path(__file__).resolve().parents[2] / "assets" / "audio"


@pytest.fixture(scope="module")
def bb():
    return load_model("sound_events", device="cpu")


@pytest.fixture(scope="module")
def fe():
    return AudioFrontend(device="cpu")


@pytest.fixture(scope="module")
def heldout(fe):
    return generate(50, seed=12345, frontend=fe)  # 300 clips from a seed used neither for training nor testing


def _wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


def test_registered_audio_model(bb, fe):
    assert bb.modality == "audio" and bb.labels == LABELS and bb.input_shape == fe.shape
    assert bb.meta["frontend"].config() == fe.config()
    x = bb.preprocess(np.zeros(16000, np.float32), 16000)
    assert x.shape == fe.shape and float(x.abs().max()) == 0.0  # silence is exactly 0 in model space


@pytest.mark.slow  # ~30 s on the shared 2-core CPU (300 fresh clips)
def test_heldout_accuracy(bb, fe, heldout):
    x = fe.spectrogram(heldout.waves)
    pred = bb(x).argmax(1).numpy()
    acc = float((pred == heldout.labels).mean())
    assert acc >= 0.90, acc
    for k in range(len(LABELS)):  # no class is sacrificed
        assert (pred[heldout.labels == k] == k).mean() >= 0.75, LABELS[k]


def test_example_clips_classify_correctly(bb, fe):
    manifest = json.loads((AUDIO / "manifest.json").read_text())["clips"]
    assert sorted(c["label"] for c in manifest) == sorted(LABELS)
    for c in manifest:
        w, sr = fe.load_audio((AUDIO / c["file"]).read_bytes())
        x = bb.preprocess(w, sr)
        assert int(bb(x[None]).argmax()) == c["class_index"] == LABELS.index(c["label"]), c["file"]
        mask = np.load(AUDIO / c["mask"])
        assert mask.shape == fe.shape[1:] and mask.dtype == bool and mask.any()


def test_masks_cover_the_event(fe, heldout):
    # the mask is nonempty and holds most of the event's energy (mixture energy above background)
    assert all(m.any() for m in heldout.masks)
    p = fe.mel_power(heldout.waves[:60]).numpy()
    for m, pi in zip(heldout.masks[:60], p):
        assert pi[m].mean() > 3 * pi[~m].mean()  # masked cells are much louder than the rest
    # the mask's time span sits where the event was placed: clean event, no background
    from models.sound_events_data import make_clip
    mix, ev, bg = make_clip(0, np.random.default_rng(3), fe)
    from models.sound_events_data import event_masks
    m = event_masks(ev[None], bg[None], fe)[0]
    on = np.nonzero(np.abs(ev) > 0)[0]
    frames = np.nonzero(m.any(0))[0]
    assert frames.min() >= on[0] // fe.hop - 2 and frames.max() <= on[-1] // fe.hop + 2


def test_load_audio_conversions(fe):
    t = np.arange(8000) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    w, sr = fe.load_audio(_wav_bytes(tone, 8000))                     # 8 kHz -> 16 kHz
    assert sr == 16000 and w.dtype == np.float32 and w.shape == (fe.clip_samples,)
    assert np.abs(w[:16000]).max() == pytest.approx(0.5, abs=0.02) and np.abs(w[16500:]).max() == 0  # padded
    w8, _ = fe.load_audio(_wav_bytes(tone, 8000, "PCM_U8"))            # 8-bit unsigned
    assert np.abs(w8 - w).max() < 0.03
    stereo = np.stack([tone, tone], 1)
    ws, _ = fe.load_audio(_wav_bytes(stereo, 8000))                  # stereo -> mono
    assert np.abs(ws - w).max() < 1e-3
    wf, _ = fe.load_audio(_wav_bytes(tone, 8000, "PCM_16", "FLAC"))   # FLAC
    assert np.abs(wf - w).max() < 1e-3
    long = np.tile(tone, 6)                                           # 6 s -> crop to the loudest 2 s
    long[:8000 * 3] *= 0.01
    wl, _ = fe.load_audio(_wav_bytes(long, 8000))
    assert np.abs(wl).max() > 0.45


def _hour_long_wav() -> bytes:
    """An hour of 8-bit audio at 1 kHz: 3.6 MB of bytes, written without making a float array."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1), f.setsampwidth(1), f.setframerate(1000)
        f.writeframes(bytes([128]) * 3600 * 1000)
    return buf.getvalue()


@pytest.mark.parametrize("make, message", [
    (lambda: b"", "empty"),
    (lambda: _wav_bytes(np.zeros((0,)), 16000), "empty"),
    (lambda: _wav_bytes(np.array([0.1, np.nan, 0.2] * 100), 16000, "FLOAT"), "NaN"),
    (lambda: _wav_bytes(np.array([0.1, np.inf] * 100), 16000, "FLOAT"), "infinite"),
    (_hour_long_wav, "too long"),
    (lambda: _wav_bytes(np.zeros(16000), 16000)[:30] + b"\x13\x37" * 500, "audio"),  # corrupt header
    (lambda: b"\x89PNG\r\n\x1a\n" + bytes(200), "not a readable audio file"),
    (lambda: b"hello, this is text and not audio at all" * 10, "not a readable audio file"),
])
def test_load_audio_rejects_bad_input(fe, make, message):
    with pytest.raises(ValueError, match=message):
        fe.load_audio(make())


def test_preprocess_rejects_bad_arrays(fe):
    with pytest.raises(ValueError, match="NaN"):
        fe.preprocess(np.array([0.0, np.nan]), 16000)
    with pytest.raises(ValueError, match="empty"):
        fe.preprocess(np.zeros(0), 16000)
    x = fe.preprocess(torch.zeros(2, 44100), 44100)  # (C, L) stereo tensor at 44.1 kHz
    assert x.shape == fe.shape


def test_apply_mask_identity_and_silence(fe, heldout):
    w = heldout.waves[0]
    ones = fe.apply_mask(w, np.ones(fe.shape[1:]))
    snr = 10 * np.log10((w ** 2).sum() / ((w - ones) ** 2).sum())
    assert snr > 60
    assert np.abs(fe.apply_mask(w, np.zeros(fe.shape[1:]))).max() < 1e-6
    # keep + remove = original; keeping the event mask keeps the event band, removing it drops it
    m = heldout.masks[0].astype(np.float32)
    keep, drop = fe.apply_mask(w, m), fe.apply_mask(w, 1 - m)
    assert np.abs(keep + drop - w).max() < 1e-4
    pk, pd = fe.mel_power(keep).numpy(), fe.mel_power(drop).numpy()
    assert pk[m > 0].sum() > 5 * pd[m > 0].sum()


def test_spectrogram_hover_reads_seconds_and_hertz(fe):
    """The map's hover on the Audio page names the time and frequency of the cell, not its indices."""
    from ui.audio import spectrogram_axes
    from ui.plots import heatmap_figure
    sal = np.zeros(fe.shape[1:], np.float32)
    sal[-1, -1] = 1.0                                       # the highest band, the last frame
    fig = spectrogram_axes(heatmap_figure(sal, sal), fe)
    trace = next(t for t in fig.data if t.hovertemplate)
    assert "s," in trace.hovertemplate and "Hz" in trace.hovertemplate and "x=" not in trace.hovertemplate
    data = np.asarray(trace.customdata)
    assert data.shape[:2] == np.shape(trace.z)
    t_first, f_low = data[0, 0]
    t_last, f_high = data[-1, -1]
    assert 0 <= t_first < 0.1 and fe.clip_seconds - 0.1 < t_last <= fe.clip_seconds
    assert f_low < 200 and f_high > 0.8 * fe.band_centres_hz()[-1]
