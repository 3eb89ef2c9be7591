"""Audio input and playback for the Audio page: bundled clips or uploads, waveform figure, WAV encoding.

Playback goes through WAV bytes we encode ourselves: ``st.audio`` rescales numpy input to its peak, which
would hide that a masked clip is quieter than the original.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import soundfile as sf
import streamlit as st

AUDIO_DIR = Path(__file__).resolve().parent.parent / "assets" / "audio"
UPLOAD_TYPES = ["wav", "flac", "ogg"]
SOURCES = ("Example clip", "Upload a clip")


@dataclass
class AudioInput:
    wave: np.ndarray             # float32 mono at the model's sample rate, clip length
    sample_rate: int
    input_id: str                # sha256 of the raw file bytes
    name: str
    truth: np.ndarray | None = None   # ground-truth (F, T) mask of a bundled clip
    truth_label: str | None = None
    notes: list[str] = field(default_factory=list)


def manifest() -> list[dict]:
    path = AUDIO_DIR / "manifest.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data["clips"] if isinstance(data, dict) else data


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV, clipped but never rescaled (so loudness differences survive)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, np.float32), -1.0, 1.0), int(sample_rate), format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def describe_file(data: bytes) -> list[str]:
    """What conversions loading will make (rate, channels, length), for the user to read."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:
        return []
    return [f"{info.format} file: {info.samplerate} Hz, {info.channels} channel(s), {info.duration:.2f} s, "
            f"{info.subtype}."]


def decode_audio(data: bytes, name: str, frontend) -> AudioInput | None:
    """Decode or explain why not (st.error). Never raises."""
    try:
        wave, sr = frontend.load_audio(data)
    except ValueError as e:
        st.error(f"**{name}**: {e}. Upload a WAV, FLAC or OGG clip of at most "
                 f"{frontend.max_seconds:.0f} s.")
        return None
    except Exception as e:  # anything libsndfile did not foresee
        st.error(f"**{name}** could not be read ({type(e).__name__}: {e}).")
        return None
    notes = describe_file(data)
    if notes:
        notes.append(f"Analysed as mono {frontend.sample_rate} Hz, {frontend.clip_seconds:g} s "
                     "(longer clips: the loudest window; shorter: padded with silence).")
    return AudioInput(wave, sr, hashlib.sha256(data).hexdigest(), name, notes=notes)


def audio_input(frontend, key_prefix: str = "audio.") -> AudioInput | None:
    source = st.radio("Clip", SOURCES, horizontal=True, key=f"{key_prefix}source", label_visibility="collapsed")
    if source == SOURCES[0]:
        clips = manifest()
        if not clips:
            st.error(f"No example clips in {AUDIO_DIR}; upload a clip instead.")
            return None
        names = [c["file"] for c in clips]
        name = st.selectbox("Example clip", names, format_func=lambda f: f"{Path(f).stem}", key=f"{key_prefix}ex")
        clip = clips[names.index(name)]
        inp = decode_audio((AUDIO_DIR / clip["file"]).read_bytes(), name, frontend)
        if inp is not None and clip.get("mask"):
            inp.truth = np.load(AUDIO_DIR / clip["mask"]).astype(bool)
            inp.truth_label = clip.get("label")
        return inp
    up = st.file_uploader("Upload a clip (WAV, FLAC or OGG)", type=UPLOAD_TYPES, key=f"{key_prefix}upload")
    if up is None:
        st.caption("No file yet: drop one above, or pick an example clip.")
        return None
    return decode_audio(up.getvalue(), up.name, frontend)


def waveform_figure(wave: np.ndarray, sample_rate: int, height: int = 180, max_points: int = 4000) -> go.Figure:
    """Min/max envelope per bucket, so a long clip draws as fast as a short one."""
    w = np.asarray(wave, np.float32)
    step = max(1, len(w) // max_points)
    n = len(w) // step * step
    buckets = w[:n].reshape(-1, step)
    t = np.arange(buckets.shape[0]) * step / sample_rate
    fig = go.Figure([go.Scatter(x=t, y=buckets.max(1), mode="lines", line=dict(width=1), name="max"),
                     go.Scatter(x=t, y=buckets.min(1), mode="lines", line=dict(width=1), fill="tonexty",
                                name="min")])
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0), showlegend=False,
                      xaxis_title="seconds", yaxis=dict(range=[-1, 1], title="amplitude"))
    return fig


def keep_mask(saliency: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Binary (F, T) mask of the most salient cells: the top ``keep_fraction`` of the map."""
    sal = np.nan_to_num(np.asarray(saliency, np.float32))
    if keep_fraction >= 1:
        return np.ones_like(sal, dtype=bool)
    k = max(1, int(round(keep_fraction * sal.size)))
    thresh = np.partition(sal.ravel(), sal.size - k)[sal.size - k]
    return sal >= thresh
