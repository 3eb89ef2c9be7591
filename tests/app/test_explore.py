"""The Explore page in AppTest: the real app, the bundled EfficientNet-Lite0, real photographs.

AppTest cannot fire ``run_every``, so a run is driven to completion by calling ``at.run()`` in a bounded loop.
Sobol with grid 2 and 4 designs costs 4 x (4 + 1) = 20 queries (with 2 designs of the unscrambled
sequence A_n == B_n and every index is 0).
"""
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TARGET_LABEL = "Class to explain (type to search)"


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cat_jpeg() -> bytes:
    return _bytes(Image.fromarray(data.chelsea()), "JPEG", quality=92)


def open_explore() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()                                  # the app opens on Home
    at.switch_page("views/explore.py").run()  # the first run loads the model and measures the per-query cost
    assert not at.exception, at.exception
    assert at.title[0].value.endswith("Explore")
    return at


def upload(at: AppTest, name: str, payload: bytes, mime: str) -> AppTest:
    at.radio(key="explore.source").set_value("Upload an image").run()
    at.file_uploader(key="explore.upload").set_value((name, payload, mime)).run()
    assert not at.exception, at.exception
    return at


def small_sobol(at: AppTest) -> None:
    at.selectbox(key="explore.method").set_value("sobol").run()
    at.slider(key="explore.sobol.grid_size").set_value(2)
    at.select_slider(key="explore.sobol.nb_design").set_value(4).run()


def run_to_end(at: AppTest, max_polls: int = 120) -> None:
    at.button(key="explore.run").click().run()
    for _ in range(max_polls):
        if at.download_button:
            return
        time.sleep(0.25)
        at.run()
    raise AssertionError("the run did not finish")


def top5(at: AppTest):
    return at.dataframe[0].value


@pytest.mark.slow  # ~20 s on 2 cores, most of it loading the model and measuring its batch size
def test_upload_photo_run_sobol_and_download(cat_jpeg, downloads):
    at = upload(open_explore(), "chelsea.jpg", cat_jpeg, "image/jpeg")
    assert not at.error
    preds = top5(at)
    assert preds.iloc[0]["class"] == "Egyptian cat" and preds.iloc[0]["index"] == 285
    assert len(preds) == 5 and preds["probability"].is_monotonic_decreasing
    target = next(s for s in at.selectbox if s.label == TARGET_LABEL)
    assert target.value == 285                                  # defaults to the top-1 class

    small_sobol(at)
    assert any("**Query budget:** 20 queries" in m.value for m in at.markdown)
    run_to_end(at)
    assert not at.exception and not at.error
    assert at.get("progress")[0].proto.value == 100
    assert at.get("plotly_chart"), "no heatmap"
    assert [b.label for b in at.download_button] == ["Overlay PNG", "Raw map (.npy)", "Run record (JSON)"]

    npy = next(v for k, v in downloads.items() if k.endswith(".npy"))
    sal = np.load(io.BytesIO(npy))
    assert sal.shape == (224, 224) and np.isfinite(sal).all() and sal.max() > sal.min()
    png = Image.open(io.BytesIO(next(v for k, v in downloads.items() if k.endswith(".png"))))
    assert png.size == (224, 224) and png.mode == "RGB"
    record = json.loads(next(v for k, v in downloads.items() if k.endswith(".json")))
    assert record["method"] == "sobol" and record["params"]["grid_size"] == 2 and record["params"]["nb_design"] == 4
    assert record["queries"] == 20 and record["target"] == 285 and record["target_label"] == "Egyptian cat"
    assert record["status"] == "done" and "torch" in record["versions"] and record["from_cache"] is False

    # the same request again is answered from the cache, and the page says so
    run_to_end(at)
    assert any("Served from cache" in s.value for s in at.success)


def test_a_parameter_change_marks_the_last_map_as_other_settings():
    at = open_explore()
    small_sobol(at)
    run_to_end(at)
    assert not at.info and at.download_button
    at.slider(key="explore.sobol.grid_size").set_value(3).run()
    notes = [i.value for i in at.info]
    assert any("settings changed since the last run" in n and "parameter grid_size: 2 → 3" in n for n in notes)
    assert not at.download_button and not at.get("progress")     # the old run is not shown as the result
    at.slider(key="explore.sobol.grid_size").set_value(2).run()   # back to the run's settings: it is current
    assert not at.info and at.download_button


def test_other_target_and_stop_keeps_partial_map(downloads):
    at = open_explore()                                         # the bundled cat example is the default input
    assert top5(at).iloc[0]["index"] == 285
    next(s for s in at.selectbox if s.label == TARGET_LABEL).set_value(967).run()   # espresso
    at.selectbox(key="explore.method").set_value("sobol").run()
    at.slider(key="explore.sobol.grid_size").set_value(8)
    at.select_slider(key="explore.sobol.nb_design").set_value(512).run()            # 33,280 queries
    at.button(key="explore.run").click().run()
    assert not at.button(key="explore.stop").disabled
    at.button(key="explore.stop").click().run()
    for _ in range(60):
        if at.download_button:
            break
        time.sleep(0.25)
        at.run()
    assert not at.exception
    record = json.loads(next(v for k, v in downloads.items() if k.endswith(".json")))
    assert record["status"] == "cancelled" and record["target"] == 967 and record["target_label"] == "espresso"
    assert 0 < record["queries"] < 33_280
    assert at.get("progress")[0].proto.value < 100


def _cat() -> Image.Image:
    return Image.fromarray(data.chelsea())


CONVERTED = {
    "grayscale.png": (lambda: _bytes(_cat().convert("L"), "PNG"), "L image converted to RGB"),
    "rgba.png": (lambda: _bytes(_cat().convert("RGBA"), "PNG"), "Transparency flattened"),
    "palette.png": (lambda: _bytes(_cat().convert("P"), "PNG"), "P image converted to RGB"),
    "cmyk.jpg": (lambda: _bytes(_cat().convert("CMYK"), "JPEG"), "CMYK image converted to RGB"),
    "sixteen.png": (lambda: _bytes(Image.fromarray(np.asarray(_cat().convert("L"), np.uint16) * 257), "PNG"),
                    "rescaled to 8 bits"),
    "animated.gif": (lambda: _bytes(_cat().convert("P"), "GIF", save_all=True,
                                    append_images=[_cat().convert("L").convert("P")]), "the first frame is used"),
}
BROKEN = {
    "garbage.png": (lambda: b"this is not an image at all " * 50, "not an image"),
    "truncated.jpg": (lambda: _bytes(_cat(), "JPEG")[:6000], "damaged or truncated"),
    "empty.png": (lambda: b"", "empty"),
}


def test_bad_and_unusual_uploads_never_crash_the_page():
    """One app session, many uploads: conversions are explained (st.info) and the cat is still recognised;
    broken files give an error that names the file and the problem, and the page keeps working after."""
    at = open_explore()
    for name, (make, note) in CONVERTED.items():
        upload(at, name, make(), "image/png")
        assert not at.error, (name, [e.value for e in at.error])
        assert any(note in i.value for i in at.info), (name, [i.value for i in at.info])
        assert top5(at).iloc[0]["index"] in (281, 282, 285, 287), name   # cat classes, even in grey
    for name, (make, message) in BROKEN.items():
        upload(at, name, make(), "image/jpeg")
        errors = [e.value for e in at.error]
        assert any(name in e and message in e for e in errors), (name, errors)
        assert not at.dataframe, "no predictions for a file that did not decode"
    upload(at, "again.png", _bytes(_cat(), "PNG"), "image/png")      # and the page still works
    assert not at.error and top5(at).iloc[0]["index"] == 285


def test_param_widgets_follow_declarations():
    """Every registered method's widgets start at its CPU defaults and give values its constructor accepts."""
    def page():
        import streamlit as st

        from explainers import get_explainer, list_explainers
        from explainers.registry import explainer_class
        from ui.params import param_widgets

        for name in list_explainers(modality="image"):
            values = param_widgets(explainer_class(name), "cpu", key_prefix="a.")
            twin = param_widgets(explainer_class(name), "cpu", key_prefix="b.")   # a second instance (Compare)
            st.session_state[f"values.{name}"] = (values, twin)
            get_explainer(name, **values)

    at = AppTest.from_function(page, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    from explainers import list_explainers
    from explainers.registry import explainer_class

    for name in list_explainers(modality="image"):
        values, twin = at.session_state[f"values.{name}"]
        assert values == twin == explainer_class(name).defaults("cpu"), name
    at.select_slider(key="a.sobol.nb_design").set_value(64).run()
    values, twin = at.session_state["values.sobol"]
    assert values["nb_design"] == 64 and twin["nb_design"] == explainer_class("sobol").defaults("cpu")["nb_design"]
    assert at.select_slider(key="a.sobol.nb_design").options == [str(2 ** k) for k in range(2, 11)]


def test_torchscript_upload_and_bad_model_file():
    """A scripted model with its declared input size classifies the example photo; a non-model file is refused."""
    import torch

    from models.zoo import TinyCNN

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(TinyCNN().eval()), buf)
    at = open_explore()
    at.radio(key="explore.model_source").set_value("TorchScript file").run()
    at.number_input(key="explore.ts_h").set_value(32)
    at.number_input(key="explore.ts_w").set_value(32)
    at.text_area(key="explore.ts_labels").set_value("\n".join(f"thing {i}" for i in range(10))).run()
    at.file_uploader(key="explore.ts_file").set_value(("tiny.pt", b"not a model", "application/octet-stream")).run()
    assert not at.exception
    assert any("tiny.pt" in e.value and "Not a TorchScript model" in e.value for e in at.error)
    at.file_uploader(key="explore.ts_file").set_value(("tiny.pt", buf.getvalue(), "application/octet-stream")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    preds = top5(at)
    assert len(preds) == 5 and all(c.startswith("thing ") for c in preds["class"])
    assert 0 < preds["probability"].sum() <= 1 + 1e-6 and preds["probability"].is_monotonic_decreasing


def test_onnx_upload_reads_the_size_from_the_file_and_refuses_a_corrupt_one():
    """An ONNX file fixing 32 x 32 classifies the example photo with the form left at 224; a corrupt file is
    refused with a message and the page keeps running."""
    import warnings

    import torch

    from models.zoo import TinyCNN

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyCNN().eval(), (torch.zeros(1, 3, 32, 32),), buf, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    at = open_explore()
    at.radio(key="explore.model_source").set_value("ONNX file").run()
    at.text_area(key="explore.onnx_labels").set_value("\n".join(f"thing {i}" for i in range(10))).run()
    at.file_uploader(key="explore.onnx_file").set_value(("tiny.onnx", b"\x08garbage" * 40, "application/octet-stream")).run()
    assert not at.exception
    assert any("tiny.onnx" in e.value and "Not an ONNX model" in e.value for e in at.error)
    at.file_uploader(key="explore.onnx_file").set_value(("tiny.onnx", buf.getvalue(), "application/octet-stream")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Input 3 x 32 x 32" in c.value and "ONNX Runtime" in c.value for c in at.caption)
    preds = top5(at)
    assert len(preds) == 5 and all(c.startswith("thing ") for c in preds["class"])


@pytest.fixture()
def settles():
    """A throwaway method whose map has its final shape from the first query on (1 query per step), so a
    convergence stop is exact: checks every 2 of 40 queries, the first has nothing to compare with, the next
    3 changes are 0, so it stops at 8 queries on any machine and batch size."""
    import torch

    from explainers import Explainer, Param, Readout, Step, register_explainer, unregister_explainer

    class Settles(Explainer):
        name = "test_settles"
        title = "Settles (test)"
        modalities = ("image",)
        param_specs = (Param("n", "int", 40, 4, 400, help="Queries, one per step."),)

        def query_budget(self, input_shape):
            return self.n

        def _iterate(self, bb, x, target):
            ramp = torch.linspace(0, 1, x.shape[-1]).expand(x.shape[-2:])
            for i in range(self.n):
                s = float(bb(x.unsqueeze(0))[0, target])
                yield Step(i + 1, (i + 1) / self.n, lambda s=s: Readout(ramp * s))

    register_explainer(Settles)
    yield Settles.name
    unregister_explainer(Settles.name)


@pytest.mark.slow  # ~20 s on 2 cores, most of it loading the model and measuring its batch size
def test_stop_when_converged_reports_the_queries_spent(settles, downloads):
    at = open_explore()
    at.selectbox(key="explore.method").set_value(settles).run()
    assert any("**Query budget:** 40 queries" in m.value for m in at.markdown)   # the most it can spend
    assert at.number_input(key="explore.stop_tol").disabled                      # off by default
    at.checkbox(key="explore.stop_on").check().run()
    assert at.number_input(key="explore.stop_tol").value == 1.0                  # percent
    run_to_end(at)
    assert not at.exception and not at.error
    assert "converged at 8 of 40 queries" in at.get("progress")[0].proto.text
    record = json.loads(next(v for k, v in downloads.items() if k.endswith(".json")))
    assert record["queries"] == 8 and record["budget"] == 40 and record["converged"] is True
    assert record["stop_tol"] == 0.01 and record["stop_window"] == 3 and record["status"] == "done"
