"""Backends (models/backends.py, models/tuning.py) and users' ONNX files (models.load_onnx), on the real models."""
import io
import json
import warnings

import pytest
import torch

from explainers import get_explainer
from models import ModelLoadError, load_model, load_onnx
from models import backends, tuning
from runtime.engine import Engine

SOBOL = dict(grid_size=4, nb_design=8)   # 144 queries: enough for a map with structure, a few seconds


def export(module: torch.nn.Module, example: torch.Tensor, dynamic: bool) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=18, input_names=["pixels"],
                          dynamic_axes={"pixels": {0: "n"}} if dynamic else None)
    return buf.getvalue()


@pytest.fixture(scope="module")
def torch_effnet():
    return load_model("efficientnet_lite0", device="cpu", backend="torch")


@pytest.fixture(scope="module")
def cat_x(torch_effnet, cat_image):
    return torch_effnet.preprocess(cat_image)


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "fixed-batch-1"])
def test_an_onnx_file_explains_the_cat_with_the_torch_map(torch_effnet, cat_x, dynamic):
    net = torch_effnet.module.to(memory_format=torch.contiguous_format)
    raw = export(net, torch.zeros(1, 3, 224, 224), dynamic)
    torch_effnet.module.to(memory_format=torch.channels_last)
    bb = load_onnx(raw, labels=torch_effnet.labels, outputs="logits", threads=1)
    assert bb.backend == "onnxruntime" and bb.input_shape == (3, 224, 224)
    assert bb.meta["fixed_batch"] == (None if dynamic else 1) and bb.meta["layout"] == "NCHW"
    assert "CPUExecutionProvider" in bb.meta["providers"]
    assert bb.predict(cat_x, 1)[0][0] == torch_effnet.predict(cat_x, 1)[0][0] == 285
    ref = get_explainer("sobol", seed=0, **SOBOL).explain(torch_effnet, cat_x, 285)
    got = get_explainer("sobol", seed=0, **SOBOL).explain(bb, cat_x, 285)
    assert float(ref.std()) > 0
    torch.testing.assert_close(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=0)


def test_onnx_reads_channels_last_and_fixed_sizes(tiny):
    class ChannelsLast(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return self.net(z.permute(0, 3, 1, 2))

    raw = export(ChannelsLast(tiny.module.to(memory_format=torch.contiguous_format)), torch.zeros(1, 32, 32, 3), True)
    bb = load_onnx(raw, threads=1, input_shape=(3, 32, 32))
    assert bb.meta["layout"] == "NHWC" and bb.input_shape == (3, 32, 32)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(bb.forward_raw(x), tiny.module(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelLoadError, match="fixes height 32 .declared 64."):
        load_onnx(raw, input_shape=(3, 64, 32))


def test_bad_onnx_files_get_clear_errors(tiny):
    with pytest.raises(ModelLoadError, match="Not an ONNX model"):
        load_onnx(b"\x08\x07garbage" * 50)
    good = export(tiny.module.to(memory_format=torch.contiguous_format), torch.zeros(1, 3, 32, 32), True)
    with pytest.raises(ModelLoadError, match="Not an ONNX model"):
        load_onnx(good[: len(good) // 2])      # truncated
    flat = export(torch.nn.Linear(8, 3), torch.zeros(1, 8), True)
    with pytest.raises(ModelLoadError, match="rank 4"):
        load_onnx(flat)
    with pytest.raises(ModelLoadError, match="3 labels were given but the model returns 10"):
        load_onnx(good, labels=["a", "b", "c"])


def test_auto_checks_the_export_and_serves_the_same_scores(tiny):
    bb = load_model("tiny_cnn", device="cpu", backend="onnxruntime", threads=1)
    assert bb.backend == "onnxruntime" and "outputs within" in bb.backend_note
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain = load_model("tiny_cnn", device="cpu", backend="torch")
    torch.testing.assert_close(bb(x), plain(x), atol=1e-5, rtol=1e-4)
    assert bb.is_white_box and bb.module is not None          # the white-box references keep the module
    auto = load_model("tiny_cnn", device="cpu")
    assert auto.backend in ("onnxruntime", "torch") and auto.backend_note


def test_a_torchscript_upload_is_served_by_onnx_runtime_with_the_same_scores(tiny):
    from models import load_torchscript

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(tiny.module.to(memory_format=torch.contiguous_format)), buf)
    bb = load_torchscript(buf.getvalue(), (3, 32, 32), backend="onnxruntime")
    assert bb.backend == "onnxruntime", bb.backend_note
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(bb.forward_raw(x), tiny.module(x), atol=1e-5, rtol=1e-4)


def test_a_mismatching_export_falls_back_to_torch_with_the_reason(monkeypatch):
    real = backends.OnnxRunner.__call__
    monkeypatch.setattr(backends.OnnxRunner, "__call__", lambda self, x: real(self, x) + 0.01)
    for backend in ("auto", "onnxruntime"):
        bb = load_model("tiny_cnn", device="cpu", backend=backend)
        assert bb.backend == "torch" and bb._runner is None
        assert bb.backend_note.startswith("torch (ONNX Runtime not used: outputs differ from torch by ")
        assert bb.backend_note.endswith("(tolerance 1e-04))")


def test_a_failing_export_falls_back_to_torch(monkeypatch):
    def broken(bb):
        raise backends.BackendError("ONNX export failed (test)")
    monkeypatch.setattr(backends, "onnx_file", broken)
    bb = load_model("tiny_cnn", device="cpu", backend="auto")
    assert bb.backend == "torch" and "export failed" in bb.backend_note


def test_compile_matches_torch_or_says_why_not(tiny):
    bb = load_model("tiny_cnn", device="cpu", backend="compile")
    if bb.backend == "torch":
        assert bb.backend_note.startswith("torch (torch.compile not used: ")
    else:
        assert bb.backend == "compile"
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))   # 5: a padded last chunk
    torch.testing.assert_close(bb(x), tiny(x), atol=1e-5, rtol=1e-4)


def test_pick_prefers_small_batches_unless_clearly_faster():
    per = {(("a", 1), 1): 1.0, (("a", 1), 2): 0.98, (("b", 2), 1): 0.9, (("b", 2), 4): 0.5}
    assert tuning.pick(per) == (("b", 2), 4)
    assert tuning.pick({(("a", 1), 1): 1.0, (("a", 1), 2): 0.98}) == (("a", 1), 1)


def test_fastest_measures_once_per_key(monkeypatch, tmp_path):
    calls = []

    def forward(kind):
        def f(x):
            calls.append(kind)
            return torch.zeros(x.shape[0], 2)
        return f

    cands = {("slow", 1): forward("slow"), ("fast", 1): forward("fast")}
    monkeypatch.setattr(tuning, "measure", lambda c, *a, **k: {(("slow", 1), 1): 2.0, (("fast", 1), 1): 1.0})
    first = tuning.fastest(cands, (3, 8, 8), torch.device("cpu"), key="k", cache_dir=tmp_path)
    assert (first.backend, first.batch, first.speedup) == ("fast", 1, 2.0)
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured twice"))
    assert tuning.fastest(cands, (3, 8, 8), torch.device("cpu"), key="k", cache_dir=tmp_path) == first
    assert len(json.loads((tmp_path / "tuning.json").read_text())) == 1


def test_the_run_record_names_the_backend(tiny):
    bb = load_model("tiny_cnn", device="cpu", backend="onnxruntime", threads=1)
    x = torch.rand(3, 32, 32)
    engine = Engine(disk_cache=False)
    snap = engine.run(bb, x, "rise", {"n_masks": 40}, target=1)
    assert snap.backend == "onnxruntime" and snap.record()["backend"] == "onnxruntime"
    again = engine.run(bb, x, "rise", {"n_masks": 40}, target=1)
    assert again.from_cache and again.backend == "onnxruntime"
