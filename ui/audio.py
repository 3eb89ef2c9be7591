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

from models.audio import hz_to_mel

AUDIO_DIR = Path(__file__).resolve().parent.parent / "assets" / "audio"
UPLOAD_TYPES = ["wav", "flac", "ogg"]
SOURCES = ("Example clip", "Upload a clip")
CLIP_LEVEL = 0.999      # |sample| at or above this is at full scale
CLIP_FRACTION = 0.001   # a clip with at least this share of its samples at full scale is flagged as clipped


@dataclass
class AudioInput:
    wave: np.ndarray             # float32 mono at the model's sample rate, clip length
    sample_rate: int
    input_id: str                # sha256 of the raw file bytes
    name: str
    truth: np.ndarray | None = None   # ground-truth (F, T) mask of a bundled clip
    truth_label: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # e.g. clipping: shown as st.warning


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
    channels = "1 channel" if info.channels == 1 else f"{info.channels} channels"
    return [f"{info.format} file: {info.samplerate} Hz, {channels}, {info.duration:.2f} s, "
            f"{info.subtype}."]


def what_to_upload(frontend) -> str:
    return f"Upload a WAV, FLAC or OGG clip of at most {frontend.max_seconds:.0f} s."


def decode_audio(data: bytes, name: str, frontend) -> AudioInput | None:
    """Decode or explain why not (st.error naming the file and what to do). Never raises."""
    try:
        wave, sr = frontend.load_audio(data)
    except ValueError as e:
        st.error(f"**{name}** could not be used: {str(e).rstrip('.')}. {what_to_upload(frontend)}")
        return None
    except Exception as e:  # anything libsndfile did not foresee
        st.error(f"**{name}** could not be read ({type(e).__name__}). {what_to_upload(frontend)}")
        return None
    notes = describe_file(data)
    if notes:
        notes.append(f"Analysed as mono {frontend.sample_rate} Hz, {frontend.clip_seconds:g} s "
                     "(longer clips: the loudest window; shorter: padded with silence).")
    return AudioInput(wave, sr, hashlib.sha256(data).hexdigest(), name, notes=notes,
                      warnings=[w for w in [clipping_warning(data)] if w])


def clipped_fraction(samples: np.ndarray, level: float = CLIP_LEVEL) -> float:
    """Fraction of the samples at full scale (|x| >= ``level``): a clipped recording piles up there."""
    a = np.abs(np.asarray(samples, np.float32))
    return float((a >= level).mean()) if a.size else 0.0


def clipping_warning(data: bytes) -> str | None:
    """A warning when the file's own samples (before resampling and mixing to mono) look clipped."""
    try:
        subtype = sf.info(io.BytesIO(data)).subtype
        samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:   # decode_audio already said what is wrong with the file
        return None
    level = 127 / 128 if subtype in ("PCM_U8", "PCM_S8") else CLIP_LEVEL   # 8-bit's largest sample is 127/128
    frac = clipped_fraction(samples, level)
    if frac < CLIP_FRACTION:
        return None
    return (f"This clip looks clipped: {frac:.1%} of its samples are at full scale (|x| ≥ {level:.3g}). "
            "The flattened peaks add broadband distortion that the spectrogram, the model and the map all see. "
            "Record or export it quieter if you can.")


def wanted_key(key_prefix: str) -> str:
    """The session-state key another page sets (to a clip's stem, e.g. "chirp") to open the Audio page on it."""
    return f"{key_prefix}wanted_clip"


def audio_input(frontend, key_prefix: str = "audio.") -> AudioInput | None:
    clips = manifest()
    names = [c["file"] for c in clips]
    wanted = st.session_state.pop(wanted_key(key_prefix), None)
    by_stem = {Path(f).stem: f for f in names}
    if wanted in by_stem:   # set before the widgets are made: the page opens on that clip
        st.session_state[f"{key_prefix}source"] = SOURCES[0]
        st.session_state[f"{key_prefix}ex"] = by_stem[wanted]
    source = st.radio("Clip", SOURCES, horizontal=True, key=f"{key_prefix}source", label_visibility="collapsed")
    if source == SOURCES[0]:
        if not clips:
            st.error(f"No example clips in {AUDIO_DIR}; upload a clip instead.")
            return None
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
    """Min/max envelope per bucket, so a long clip draws as fast as a short one. The amplitude axis is zoomed to
    the clip's peak (a quiet clip would be a flat line on a full-scale axis); its title says the peak in dBFS,
    and the full-scale lines (±1) are drawn whenever the zoom reaches them."""
    w = np.asarray(wave, np.float32)
    step = max(1, len(w) // max_points)
    n = len(w) // step * step
    buckets = w[:n].reshape(-1, step)
    t = np.arange(buckets.shape[0]) * step / sample_rate
    fig = go.Figure([go.Scatter(x=t, y=buckets.max(1), mode="lines", line=dict(width=1), name="max"),
                     go.Scatter(x=t, y=buckets.min(1), mode="lines", line=dict(width=1), fill="tonexty",
                                name="min")])
    peak = float(np.abs(w).max()) if w.size else 0.0
    if peak <= 1e-6:
        note, half = "silent", 1.05
    elif peak * 1.15 < 0.9:          # zoomed to the peak: a quiet clip fills the plot
        half = peak * 1.15
        note = f"peak {20 * np.log10(peak):.0f} dBFS · amplitude axis zoomed ×{1 / half:.0f}"
    else:                            # near full scale: show the limits a clipped clip runs into
        half = 1.05
        note = f"peak {20 * np.log10(peak):.1f} dBFS · dotted: full scale"
        for y in (-1.0, 1.0):
            fig.add_hline(y=y, line=dict(color="#d62728", width=1, dash="dot"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=24, b=0), showlegend=False,
                      xaxis_title="time (s)", yaxis=dict(range=[-half, half], title="amplitude"),
                      title=dict(text=note, font=dict(size=12), x=0, xanchor="left", y=1, yanchor="top",
                                 pad=dict(t=4)))
    return fig


def spectrogram_axes(fig: go.Figure, frontend, n_time_ticks: int = 5) -> go.Figure:
    """Put time (s) and frequency (Hz) on a spectrogram figure drawn in cell coordinates (x = frame index,
    y = mel band index, low frequencies at the bottom), as ``ui.plots.heatmap_figure`` draws it."""
    times = frontend.frame_times()
    centres = frontend.band_centres_hz()
    t_ticks = np.linspace(0, frontend.clip_seconds, n_time_ticks)
    x_ticks = np.interp(t_ticks, times, np.arange(len(times)))
    hz = [f for f in (100, 200, 500, 1000, 2000, 4000, 8000) if centres[0] <= f <= centres[-1]]
    y_ticks = np.interp(hz_to_mel(hz), hz_to_mel(centres), np.arange(len(centres)))
    fig.update_xaxes(visible=True, title_text="time (s)", tickmode="array", tickvals=x_ticks.tolist(),
                     ticktext=[f"{t:g}" for t in t_ticks], showgrid=False, zeroline=False)
    # time and frequency have no common unit: the cells fill the plot instead of keeping square pixels (which
    # left the time axis far below a flat strip of spectrogram)
    fig.update_yaxes(visible=True, title_text="frequency (Hz, mel scale)", tickmode="array",
                     tickvals=y_ticks.tolist(), ticktext=[f"{f / 1000:g}k" if f >= 1000 else f"{f}" for f in hz],
                     showgrid=False, zeroline=False, scaleanchor=None, constrain="domain")
    fig.layout.yaxis.scaleanchor = None
    for trace in fig.data:            # the map's hover in seconds and hertz, not in cell indices
        if isinstance(trace, go.Heatmap) and trace.z is not None and trace.hovertemplate:
            rows, cols = np.shape(trace.z)
            x = (trace.x0 or 0) + (trace.dx or 1) * np.arange(cols)
            y = (trace.y0 or 0) + (trace.dy or 1) * np.arange(rows)
            t = np.interp(x, np.arange(len(times)), times)
            f = np.interp(y, np.arange(len(centres)), centres)
            trace.customdata = np.stack(np.broadcast_arrays(t[None, :], f[:, None]), axis=-1)
            trace.hovertemplate = "%{customdata[0]:.2f} s, %{customdata[1]:.0f} Hz<br>saliency=%{z:.4g}<extra></extra>"
    margin = fig.layout.margin
    fig.update_layout(margin=dict(l=60, b=45, r=max(12, margin.r or 0), t=margin.t if margin.t is not None else 30))
    return fig


def keep_mask(saliency: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Binary (F, T) mask of the most salient cells: the top ``keep_fraction`` of the map."""
    sal = np.nan_to_num(np.asarray(saliency, np.float32))
    if keep_fraction >= 1:
        return np.ones_like(sal, dtype=bool)
    k = max(1, int(round(keep_fraction * sal.size)))
    thresh = np.partition(sal.ravel(), sal.size - k)[sal.size - k]
    return sal >= thresh
