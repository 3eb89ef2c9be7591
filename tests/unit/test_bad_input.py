"""Bad input gets an exception that names the problem (the UI shows it; the app keeps running)."""
import io
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from explainers import get_explainer
from models import BlackBox, ImageDecodeError, decode_image

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.open(EXAMPLES / "cat.png").convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (no real pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (bytes(range(256)) * 40, "not an image"),
    (jpeg_bytes()[: len(jpeg_bytes()) // 2], "truncated"),
    (png_header(60000, 60000), "too large"),
])
def test_undecodable_images(data, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(data)


def test_a_good_image_decodes():
    out = decode_image(jpeg_bytes())
    assert out.image.mode == "RGB" and out.image.size == Image.open(EXAMPLES / "cat.png").size


def test_wrong_tensor_shape(tiny):
    e = get_explainer("lr", n_samples=8)
    with pytest.raises(ValueError, match=r"shape \(3, 64, 64\).*takes \(3, 32, 32\)"):
        e.explain(tiny, torch.zeros(3, 64, 64), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        e.explain(tiny, torch.zeros(1, 3, 32, 32), 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        e.explain(tiny, [[0.0]], 0)
    with pytest.raises(ValueError, match="NaN"):
        e.explain(tiny, torch.full((3, 32, 32), float("nan")), 0)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(3, 32, 32\)"):
        tiny(torch.zeros(2, 3, 16, 16))
    assert tiny.queries == 0   # nothing was served


@pytest.mark.parametrize("target", [10, -1, 1000])
def test_target_out_of_range(tiny, target):
    with pytest.raises(ValueError, match=rf"target {target} is out of range.*10 classes"):
        get_explainer("rise", n_masks=4).explain(tiny, torch.zeros(3, 32, 32), target)


def test_target_not_an_index(tiny):
    with pytest.raises(ValueError, match="class index"):
        get_explainer("rise", n_masks=4).explain(tiny, torch.zeros(3, 32, 32), "cat")


@pytest.mark.parametrize("method,params,match", [
    ("sobol", dict(nb_design=24), "nb_design.*power of two"),
    ("sobol", dict(grid_size=1), r"grid_size.*outside its range \[2"),
    ("lr", dict(sigma=0.0), r"sigma.*outside its range"),
    ("lr", dict(n_samples=1), r"n_samples.*outside its range"),
    ("lr", dict(n_samples=10.5), "whole number"),
    ("lr", dict(readout="max"), "readout.*one of"),
    ("lr", dict(sigma=float("nan")), "finite"),
    ("rise", dict(p1=1.5), r"p1.*outside its range"),
    ("occlusion", dict(patch=0), r"patch.*outside its range"),
    ("occlusion", dict(baseline="noise"), "baseline.*one of"),
])
def test_parameter_out_of_range(method, params, match):
    with pytest.raises(ValueError, match=match):
        get_explainer(method, **params)


def test_unknown_parameter_and_method():
    with pytest.raises(TypeError, match="unknown parameter.*n_sample"):
        get_explainer("lr", n_sample=10)
    with pytest.raises(KeyError, match="unknown method 'lime'"):
        get_explainer("lime")


def test_model_errors_surface_with_their_message():
    def broken(b):
        raise RuntimeError("the endpoint returned HTTP 500")
    bb = BlackBox(broken, labels=["a"], input_shape=(1, 4, 4))
    with pytest.raises(RuntimeError, match="HTTP 500"):
        get_explainer("occlusion", patch=2, stride=2).explain(bb, torch.zeros(1, 4, 4), 0)


@pytest.mark.parametrize("width,height", [(10_000, 10_000), (60_000, 60_000)])
def test_a_decompression_bomb_gets_one_limit(width, height):
    """Pillow warns above MAX_IMAGE_PIXELS and fails above twice that; decode_image refuses both, so the message
    gives the one limit that applies (it used to quote Pillow's number and another, "about 90 megapixels")."""
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_header(width, height))
    message = str(info.value)
    limit = Image.MAX_IMAGE_PIXELS
    assert f"{limit:,} pixels" in message and f"{width * height / 1e6:,.0f} megapixels" in message, message
    assert str(2 * limit) not in message and f"{2 * limit:,}" not in message and "about 90" not in message
    assert "Downscale" in message


@pytest.mark.parametrize("payload", [b"not audio at all", b"RIFF\x10\x00\x00\x00WAVEfmt xx",
                                     (EXAMPLES / "cat.png").read_bytes()])
def test_an_unreadable_audio_file_is_explained_without_a_memory_address(payload):
    from models.audio import AudioFrontend
    with pytest.raises(ValueError) as info:
        AudioFrontend(device="cpu").load_audio(payload)
    message = str(info.value)
    assert message.startswith("not a readable audio file"), message
    assert "0x" not in message and "BytesIO" not in message and not message.endswith("."), message


@pytest.mark.parametrize("name,data,refused", [
    ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", True),
    ("logo.SVGZ", b"\x1f\x8b compressed", True),
    ("drawing.png", b"\xef\xbb\xbf  <?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>", True),
    ("cat.png", (EXAMPLES / "cat.png").read_bytes(), False),
    ("notes.xml", b"<?xml version='1.0'?><notes/>", False),
])
def test_vector_images_are_recognised(name, data, refused):
    from ui.inputs import vector_kind
    assert (vector_kind(data, name) is not None) == refused
