"""The Audio page in AppTest: the real app, the bundled sound-event model and its bundled clips.

AppTest cannot fire ``run_every``, so a run is driven to completion by calling ``at.run()`` in a bounded loop.
"""
import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

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
