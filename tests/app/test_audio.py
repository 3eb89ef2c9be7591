"""The Audio page in AppTest: the real app, the bundled sound-event model and its bundled clips.

AppTest cannot fire ``run_every``, so a run is driven to completion by calling ``at.run()`` in a bounded loop.
"""
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from models.audio import AudioFrontend
from ui.audio import clipping_warning

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def open_audio() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/audio.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Audio")
    return at


def run_to_end(at: AppTest, timeout: float = 120) -> AppTest:
    at.button(key="audio.run").click().run()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not at.exception, at.exception
        if any("done" in (p.proto.text or "") for p in at.get("progress")):
            return at
        time.sleep(0.3)
        at.run()
    raise AssertionError("the run did not finish")


def wav(data: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_bundled_clip_explained_and_playable():
    at = open_audio()
    clip = at.selectbox(key="audio.ex").value
    # the bundled model recognises its bundled clip: top prediction is the clip's class
    label = Path(clip).stem.split("_")[0]
    assert at.dataframe[0].value.iloc[0]["class"].startswith(label[:4]), (clip, at.dataframe[0].value)
    at.selectbox(key="audio.method").set_value("sobol").run()
    at.select_slider(key="audio.sobol.nb_design").set_value(4).run()
    at.slider(key="audio.sobol.grid_size").set_value(4).run()
    run_to_end(at)
    assert not at.error, [e.value for e in at.error]
    audios = at.get("audio")
    assert len(audios) >= 3, "original, kept and removed clips"
    assert any("IoU" in m.label for m in at.metric)
    iou = float([m for m in at.metric if "IoU" in m.label][0].value)
    assert 0.0 <= iou <= 1.0


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_spectrogram_axes_and_a_quiet_clip_zoomed():
    at = open_audio()
    at.selectbox(key="audio.ex").set_value("beep.wav").run()
    waveform, spectrogram = chart_specs(at)[:2]
    # the spectrogram: time in seconds along x, the mel bands' frequencies in Hz along y
    x, y = spectrogram["layout"]["xaxis"], spectrogram["layout"]["yaxis"]
    assert x["visible"] and "time (s)" in x["title"]["text"] and x["ticktext"][0] == "0" and x["ticktext"][-1] == "2"
    assert y["visible"] and "Hz" in y["title"]["text"] and {"500", "1k", "4k"} <= set(y["ticktext"])
    frontend = AudioFrontend()
    centres = frontend.band_centres_hz()
    # the 1 kHz tick sits between the two bands whose centres surround 1 kHz
    k = int(np.searchsorted(centres, 1000))
    assert k - 1 <= y["tickvals"][y["ticktext"].index("1k")] <= k
    assert x["tickvals"][-1] == pytest.approx(frontend.frames - 1)      # 2 s is the last frame
    # the bundled beep peaks at -38 dBFS: its waveform is zoomed to the peak instead of a flat line on ±1
    peak = float(np.abs(sf.read(ROOT / "assets/audio/beep.wav")[0]).max())
    lo, hi = waveform["layout"]["yaxis"]["range"]
    assert hi == pytest.approx(-lo) and peak < hi < 2 * peak
    assert "dBFS" in waveform["layout"]["title"]["text"] and "zoomed" in waveform["layout"]["title"]["text"]
    assert not at.warning                                                # a clean clip: no clipping note


def test_a_clipped_upload_gets_a_warning_and_a_clean_loud_one_none():
    t = np.arange(16000 * 2) / 16000
    loud = np.clip(3 * np.sin(2 * np.pi * 440 * t), -1, 1).astype(np.float32)      # driven 10 dB into clipping
    clean = (0.9 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)                 # loud, below full scale
    at = open_audio()
    at.radio(key="audio.source").set_value("Upload a clip").run()
    at.file_uploader(key="audio.upload").set_value(("loud.wav", wav(loud, 16000), "audio/wav")).run()
    assert not at.exception, at.exception
    assert any("clipped" in w.value and "full scale" in w.value for w in at.warning), [w.value for w in at.warning]
    spec = chart_specs(at)[0]
    assert spec["layout"]["yaxis"]["range"][1] > 1                       # the full-scale lines are in view
    at.file_uploader(key="audio.upload").set_value(("clean.wav", wav(clean, 16000), "audio/wav")).run()
    assert not at.warning, [w.value for w in at.warning]
    assert any("1 channel," in i.value for i in at.info)                  # not "1 channel(s)"


def test_clipping_at_8_bits():
    """8-bit PCM's largest sample is 127/128 (< 0.999): a clipped 8-bit file is still recognised."""
    t = np.arange(8000) / 8000
    loud = np.clip(3 * np.sin(2 * np.pi * 200 * t), -1, 1).astype(np.float32)
    assert "clipped" in (clipping_warning(wav(loud, 8000, "PCM_U8")) or "")
    assert clipping_warning(wav(0.5 * loud, 8000, "PCM_U8")) is None


@pytest.mark.parametrize("name,payload,needle", [
    ("noise.wav", b"RIFF\x00\x00garbage" * 10, "not a readable audio file"),
    ("photo.wav", (ROOT / "assets/examples/cat.png").read_bytes(), "not a readable audio file"),
    ("nan.wav", wav(np.full(16000, np.nan, np.float32), 16000, "FLOAT"), "NaN"),
    ("empty.wav", wav(np.zeros(0, np.float32), 16000), "empty"),
])
def test_bad_uploads_show_an_error_and_the_app_keeps_running(name, payload, needle):
    at = open_audio()
    at.radio(key="audio.source").set_value("Upload a clip").run()
    at.file_uploader(key="audio.upload").set_value((name, payload, "audio/wav")).run()
    assert not at.exception, at.exception
    assert any(needle.lower() in e.value.lower() for e in at.error), [e.value for e in at.error]
    message = next(e.value for e in at.error if needle.lower() in e.value.lower())
    # it names the file and says what to do; no memory address, no double full stop
    assert name in message and "Upload a WAV, FLAC or OGG clip" in message
    assert "0x" not in message and "object at" not in message and ".." not in message, message


def test_stereo_8bit_8khz_upload_is_converted():
    t = np.arange(8000 * 2) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    payload = wav(np.stack([tone, tone], 1), 8000, "PCM_U8")
    at = open_audio()
    at.radio(key="audio.source").set_value("Upload a clip").run()
    at.file_uploader(key="audio.upload").set_value(("tone.wav", payload, "audio/wav")).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("8000 Hz, 2 channel" in i.value for i in at.info)
