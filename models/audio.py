"""Bundled audio model: a log-mel front end and a small CNN for six synthetic sound events (issue 6).

Front end (no torchaudio/librosa): soundfile decoding, mono mix, ``scipy.signal.resample_poly`` to 16 kHz,
a fixed-length clip, ``torch.stft`` power spectrum, a hand-built HTK mel filterbank and a fixed dB scale:

    x = (clip(10 log10(mel_power), -80, 0) + 80) / 80      in [0, 1]

so **0 means silence** (-80 dB or below, relative to a full-scale sine) and 1 means full scale. A "zero"
baseline in model space is therefore silence, which is what the perturbation methods assume.

``apply_mask`` maps an (F_mel, T) saliency mask back to linear-frequency STFT bins through the same
filterbank, multiplies the complex STFT and inverts it, so a page can play "what the map keeps" and
"what it removes" (time-frequency masking as in audioLIME, Haunschmid et al., ISMIR 2020).
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import BlackBox, pick_device
from .registry import register_model

ASSETS = Path(__file__).resolve().parent.parent / "assets"
WEIGHTS = ASSETS / "models" / "sound_events.pt"
CARD = ASSETS / "models" / "sound_events.json"
LABELS = ["beep", "chirp", "click_train", "noise_burst", "siren", "trill"]
DB_FLOOR = -80.0     # dB; maps to 0.0 = silence in model space


@dataclass
class AudioFrontend:
    """Waveform -> normalised log-mel (1, n_mels, frames); everything a page needs to go back to audio."""
    sample_rate: int = 16000
    clip_seconds: float = 2.0
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    max_seconds: float = 60.0        # longer uploads are refused before decoding
    device: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.device = pick_device(self.device)
        self._fb = torch.from_numpy(mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax))
        self._window = torch.hann_window(self.n_fft)
        # power of a full-scale sine in one bin of a Hann-windowed frame: the 0 dB reference
        self._ref = float((self._window.sum() / 2) ** 2)

    def config(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "device"}

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        return self.clip_samples // self.hop + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, self.n_mels, self.frames)

    # ------------------------------------------------------------------ decoding
    def load_audio(self, src: bytes | str | os.PathLike | io.IOBase, fit: bool = True) -> tuple[np.ndarray, int]:
        """Decode WAV/FLAC/OGG bytes or a path to float32 mono at ``sample_rate``; ``fit`` pads/crops to the clip.

        Raises ValueError naming the problem: not audio / corrupt, empty, too long, NaN or inf samples.
        """
        import soundfile as sf
        if isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise ValueError("empty file: no audio data")
            opener = lambda: io.BytesIO(bytes(src))  # noqa: E731
        else:
            opener = lambda: src  # noqa: E731
        try:
            info = sf.info(opener())
        except Exception as e:  # libsndfile says "Format not recognised" / "unimplemented format" ...
            raise ValueError(f"not a readable audio file (WAV, FLAC or OGG expected): {_sndfile_reason(e)}") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise ValueError("empty audio: the file holds no samples")
        seconds = info.frames / info.samplerate
        if seconds > self.max_seconds:  # checked from the header, before an hour of samples is decoded
            raise ValueError(f"audio too long: {seconds:.0f} s (at most {self.max_seconds:.0f} s accepted)")
        try:
            data, sr = sf.read(opener(), dtype="float32", always_2d=True)
        except Exception as e:
            raise ValueError(f"corrupt audio file: {_sndfile_reason(e)}") from None
        if data.size == 0:
            raise ValueError("empty audio: the file holds no samples")
        return self.prepare(data, sr, fit=fit), self.sample_rate

    def prepare(self, wave: np.ndarray | torch.Tensor, sample_rate: int, fit: bool = True) -> np.ndarray:
        """Any (L,), (L, C) or (C, L) waveform -> float32 mono at ``sample_rate`` (clip length if ``fit``)."""
        w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        if w.size == 0:
            raise ValueError("empty audio: no samples")
        if not np.issubdtype(w.dtype, np.floating):
            if np.issubdtype(w.dtype, np.integer):  # integer PCM -> [-1, 1]
                w = w.astype(np.float64) / max(abs(np.iinfo(w.dtype).min), 1)
            else:
                raise ValueError(f"audio samples must be numbers, got dtype {w.dtype}")
        if not np.isfinite(w).all():
            raise ValueError("audio contains NaN or infinite samples")
        if w.ndim == 2:  # channels on the short axis
            w = w.mean(axis=1 if w.shape[1] <= w.shape[0] else 0)
        elif w.ndim != 1:
            raise ValueError(f"waveform must be 1-D (or 2-D with channels), got shape {w.shape}")
        sample_rate = int(sample_rate)
        if sample_rate <= 0:
            raise ValueError(f"invalid sample rate {sample_rate}")
        if w.shape[0] / sample_rate > self.max_seconds:
            raise ValueError(f"audio too long: {w.shape[0] / sample_rate:.0f} s (at most {self.max_seconds:.0f} s)")
        if sample_rate != self.sample_rate:
            from scipy.signal import resample_poly
            g = gcd(sample_rate, self.sample_rate)
            w = resample_poly(w, self.sample_rate // g, sample_rate // g)
        w = w.astype(np.float32)
        return self.fit_length(w) if fit else w

    def fit_length(self, w: np.ndarray) -> np.ndarray:
        """Zero-pad a short clip at the end; crop a long one to its loudest clip-long window (hop steps)."""
        n = self.clip_samples
        if w.shape[0] <= n:
            return np.pad(w, (0, n - w.shape[0])).astype(np.float32)
        c = np.concatenate([[0.0], np.cumsum(w.astype(np.float64) ** 2)])
        starts = np.arange(0, w.shape[0] - n + 1, self.hop)
        s = int(starts[np.argmax(c[starts + n] - c[starts])])
        return np.ascontiguousarray(w[s:s + n], dtype=np.float32)

    # ------------------------------------------------------------------ features
    def _stft(self, w: torch.Tensor) -> torch.Tensor:
        return torch.stft(w, self.n_fft, self.hop, window=self._window.to(w.device), center=True,
                          return_complex=True)

    def mel_power(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(L,) or (N, L) -> mel power (F, T) or (N, F, T) relative to a full-scale sine, on ``device``."""
        w = torch.as_tensor(np.asarray(wave, np.float32) if not isinstance(wave, torch.Tensor) else wave)
        w = w.to(self.device, torch.float32)
        spec = self._stft(w).abs().pow(2) / self._ref
        return torch.matmul(self._fb.to(w.device), spec)

    def normalise(self, mel_power: torch.Tensor) -> torch.Tensor:
        db = 10 * torch.log10(mel_power.clamp_min(1e-12))
        return (db.clamp(DB_FLOOR, 0.0) - DB_FLOOR) / -DB_FLOOR

    def spectrogram(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Clip-length waveform (L,) -> (1, F, T); a batch (N, L) -> (N, 1, F, T). Values in [0, 1], 0 = silence."""
        return self.normalise(self.mel_power(wave)).unsqueeze(-3)

    def preprocess(self, wave: Any, sample_rate: int | None = None) -> torch.Tensor:
        """``bb.preprocess(waveform, sample_rate)`` (or encoded bytes / a path) -> (1, F, T) float tensor (CPU)."""
        if sample_rate is None:
            wave, sample_rate = self.load_audio(wave)
        w = self.prepare(wave, sample_rate)
        return self.spectrogram(w).cpu()

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().float().cpu().reshape(self.n_mels, -1).numpy()

    # ------------------------------------------------------------------ axes
    def band_centres_hz(self) -> np.ndarray:
        """Centre frequency (Hz) of each mel band, low to high: the peaks of ``mel_filterbank``'s triangles."""
        return mel_band_centres(self.n_mels, self.fmin, self.fmax)

    def frame_times(self) -> np.ndarray:
        """Centre time (s) of each spectrogram frame (``center=True`` STFT: frame t is centred on t * hop)."""
        return np.arange(self.frames) * self.hop / self.sample_rate

    # ------------------------------------------------------------------ back to audio
    def linear_mask(self, mask_ft: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(F_mel, T) mask -> (n_fft/2+1, T): each STFT bin takes the filterbank-weighted mean of its mel bands."""
        m = torch.as_tensor(np.asarray(mask_ft, np.float32) if not isinstance(mask_ft, torch.Tensor) else mask_ft)
        m = m.to(self.device, torch.float32).reshape(self.n_mels, -1)
        fb = self._fb.to(self.device)
        cover = fb.sum(0)                                     # bins below fmin / above fmax have no band:
        idx = torch.arange(cover.numel(), device=self.device)  # they copy the nearest covered bin
        covered = idx[cover > 1e-3 * cover.max()]
        nearest = covered[(idx[:, None] - covered[None, :]).abs().argmin(1)]
        lin = (fb.T @ m) / cover.clamp_min(1e-3 * cover.max())[:, None]
        return lin[nearest]

    def apply_mask(self, wave: np.ndarray | torch.Tensor, mask_ft: np.ndarray | torch.Tensor) -> np.ndarray:
        """Play only what a (F_mel, T) mask in [0, 1] keeps: STFT masking and inverse STFT (clip-length wave)."""
        w = torch.as_tensor(np.asarray(wave, np.float32) if not isinstance(wave, torch.Tensor) else wave)
        w = w.to(self.device, torch.float32).reshape(-1)
        spec = self._stft(w)
        lin = self.linear_mask(mask_ft)
        if lin.shape[1] != spec.shape[1]:
            raise ValueError(f"mask has {lin.shape[1]} frames, the waveform {spec.shape[1]}")
        out = torch.istft(spec * lin, self.n_fft, self.hop, window=self._window.to(w.device), center=True,
                          length=w.shape[0])
        return out.cpu().numpy().astype(np.float32)


def _sndfile_reason(e: Exception) -> str:
    """libsndfile's reason without its "Error opening <_io.BytesIO object at 0x...>: " prefix (a memory address
    means nothing to a user) and without a final full stop (the caller's sentence goes on)."""
    text = re.sub(r"^Error (opening|reading) .*?: ", "", str(e).strip(), count=1)
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the file", text).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else type(e).__name__


def hz_to_mel(f):
    """HTK mel scale, as in ``mel_filterbank``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_band_centres(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Centre frequencies (Hz) of ``mel_filterbank``'s bands: equally spaced in mel between fmin and fmax."""
    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)[1:-1]
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """HTK-mel triangular filters (n_mels, n_fft//2+1), unit peak."""
    hz2mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    mel2hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.clip(np.minimum(up, down), 0, None).astype(np.float32)


class SoundEventCNN(nn.Module):
    """Three conv blocks (conv-BN-ReLU-pool) + global average and max pooling + a linear layer."""

    def __init__(self, n_classes: int = len(LABELS), width: int = 24):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width]
        blocks = []
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))


def load_card() -> dict:
    return json.loads(CARD.read_text())


@register_model("sound_events", modality="audio",
                description="Small CNN on log-mel spectrograms: 6 synthetic sound events (beep, chirp, click "
                            "train, noise burst, siren, trill), 2 s at 16 kHz")
def _load(device=None, score_mode: str = "prob") -> BlackBox:
    card = load_card()
    frontend = AudioFrontend(**card["frontend"], device=device)
    net = SoundEventCNN(len(card["labels"]), card.get("width", 24))
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return BlackBox(net, labels=card["labels"], input_shape=frontend.shape, name="sound_events", outputs="logits",
                    score_mode=score_mode, device=frontend.device, preprocess=frontend.preprocess,
                    to_display=frontend.to_display, modality="audio", meta={"frontend": frontend, "card": card})
