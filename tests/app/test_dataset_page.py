"""The Dataset page in AppTest: a ZIP of two example photos, the bundled EfficientNet-Lite0, a real run.

AppTest cannot fire ``run_every``, so the run (a background thread) is driven to the end by calling ``at.run()``
in a bounded loop. Occlusion with one 112 px patch per quadrant (4 + 1 queries, + 1 for the top class) keeps
the run to seconds; the deletion and insertion scores add 33 queries each per map.
"""
import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from ui.dataset import DatasetError, extract_zip, write_manifest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
EXAMPLES = ROOT / "assets" / "examples"
P = "dataset."


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A ZIP with fixed timestamps: the same members give the same bytes, so the same upload (the page keys a
    ZIP's folder and its runs by its sha256)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def photos_zip() -> bytes:
    """Two photos in a sub-folder, and a text file that is not an image (skipped with a note)."""
    return zip_bytes({"photos/cat.png": (EXAMPLES / "cat.png").read_bytes(),
                      "photos/coffee.png": (EXAMPLES / "coffee.png").read_bytes(),
                      "photos/readme.txt": b"two photos"})


@pytest.fixture()
def deferred(monkeypatch):
    """file name -> the callable of every deferred download button (the ZIP is built when it is clicked)."""
    found: dict = {}
    add = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        found[file_name] = data_callable
        return add(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return found


def open_dataset() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/dataset.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Dataset"
    return at


def upload(at: AppTest, name: str, data: bytes, key: str = "zip") -> None:
    at.file_uploader(key=P + key).set_value((name, data, "application/zip" if key == "zip" else "text/csv")).run()
    assert not at.exception, at.exception


def small_occlusion(at: AppTest) -> None:
    at.multiselect(key=P + "methods").set_value(["occlusion"]).run()
    at.slider(key=P + "occlusion.patch").set_value(112)
    at.slider(key=P + "occlusion.stride").set_value(112).run()
    assert not at.exception, at.exception


def run_to_end(at: AppTest, max_polls: int = 240) -> None:
    at.button(key=P + "run").click().run()
    for _ in range(max_polls):
        assert not at.exception, at.exception
        if at.get("download_button"):
            return
        time.sleep(0.25)
        at.run()
    raise AssertionError("the run did not finish: " + " | ".join(e.value for e in at.error))


def markdown(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)


def test_zip_run_gallery_downloads_and_resume(downloads, deferred):
    at = open_dataset()
    upload(at, "photos.zip", photos_zip())
    assert "**photos.zip**: 2 images; 1 other file skipped (not images: photos/readme.txt)" in markdown(at), markdown(at)
    small_occlusion(at)
    # before Run: 2 maps of 6 queries (4 patches, the input itself, the top-1 query) + 2 x 33 per map for the scores
    assert ("**2 images × 1 method = 2 maps**, 12 queries for the explanations + 132 for the scores = **144 queries** "
            "in all.") in markdown(at), markdown(at)
    assert "Expected ≈" in markdown(at)
    run_to_end(at)
    assert not at.error, [e.value for e in at.error]

    shown = at.dataframe[0].value
    assert sorted(shown["file"]) == ["photos/cat.png", "photos/coffee.png"]
    assert set(shown["status"]) == {"done"} and set(shown["method"]) == {"occlusion"}
    assert shown.set_index("file").at["photos/cat.png", "target_label"] == "Egyptian cat"
    assert shown["deletion"].between(0, 1).all() and shown["insertion"].between(0, 1).all()
    # sorted by deletion (the first score), highest first; the gallery follows the same order
    assert list(shown["deletion"]) == sorted(shown["deletion"], reverse=True)
    captions = [c for img in at.get("image") for c in img.captions]
    assert captions == [f"{f} · occlusion · deletion {d:.3f}" for f, d in zip(shown["file"], shown["deletion"])]

    table = pd.read_csv(io.BytesIO(downloads["results.csv"]))
    assert len(table) == 2 and set(table["status"]) == {"done"}
    assert pd.read_parquet(io.BytesIO(downloads["results.parquet"]))["key"].tolist() == table["key"].tolist()
    zip_name = next(n for n in deferred if n.endswith(".zip"))
    with zipfile.ZipFile(io.BytesIO(deferred[zip_name]())) as z:
        names = set(z.namelist())
        assert {"results.csv", "results.parquet", "run.json"} <= names
        npys = [n for n in names if n.startswith("maps/") and n.endswith(".npy")]
        pngs = [n for n in names if n.startswith("maps/") and n.endswith(".png")]
        assert len(npys) == 2 and len(pngs) == 2
        sal = np.load(io.BytesIO(z.read(npys[0])))
        assert sal.shape == (224, 224) and np.isfinite(sal).all() and sal.std() > 0
        assert Image.open(io.BytesIO(z.read(pngs[0]))).size == (224, 224)

    # the same ZIP and settings in another session: the page says the run is done and shows it, nothing runs
    again = open_dataset()
    upload(again, "photos.zip", photos_zip())
    small_occlusion(again)
    assert "2 of 2 already done with these settings: every map is below." in [i.value for i in again.info]
    pd.testing.assert_frame_equal(again.dataframe[0].value, shown)
    assert len(again.get("image")) == 2

    # a ground-truth CSV (a box on the cat) makes another run whose pointing and IoU are filled for that row
    at.multiselect(key=P + "scores").set_value(["pointing", "iou"]).run()
    upload(at, "truth.csv", b"path,target,box\nphotos/cat.png,Egyptian cat,\"40,10,200,220\"\nphotos/coffee.png,,\n",
           key="gt")
    assert "2 rows of ground truth" in markdown(at), markdown(at)
    run_to_end(at)
    shown = at.dataframe[0].value.set_index("file")
    assert shown.at["photos/cat.png", "pointing"] in (0.0, 1.0) and 0 <= shown.at["photos/cat.png", "iou"] <= 1
    assert pd.isna(shown.at["photos/coffee.png", "iou"])      # no ground truth for it: no score, not a zero


def maps_done(at: AppTest) -> int:
    found = [re.search(r"(\d+) / \d+ maps", p.text) for p in at.progress]
    return int(found[0].group(1)) if found and found[0] else 0


def test_stop_then_resume_with_a_broken_file():
    """Stopped after three maps, the same settings say so and Run finishes the rest; a file that is not an image
    is a failed row with its reason, and the other rows complete."""
    at = open_dataset()
    upload(at, "three.zip", zip_bytes({"broken.png": b"this is not a PNG at all",
                                       "cat.png": (EXAMPLES / "cat.png").read_bytes(),
                                       "coffee.png": (EXAMPLES / "coffee.png").read_bytes()}))
    small_occlusion(at)
    at.multiselect(key=P + "methods").set_value(["occlusion", "rise"]).run()
    at.select_slider(key=P + "rise.n_masks").set_value(200)      # about a second a map: time to press Stop
    at.multiselect(key=P + "scores").set_value([]).run()
    at.button(key=P + "run").click().run()
    for _ in range(240):                                          # the broken file's two rows and the cat's first
        if maps_done(at) >= 3:
            break
        time.sleep(0.25)
        at.run()
    at.button(key=P + "stop").click().run()
    for _ in range(240):
        if at.get("download_button"):
            break
        time.sleep(0.25)
        at.run()
    assert "stopped" in at.progress[0].text, at.progress[0].text
    done = len(at.dataframe[0].value)
    assert 3 <= done < 6, done
    at.run()
    assert f"{done} of 6 already done with these settings: **Run** goes on with the rest." in [i.value for i in at.info]

    run_to_end(at)
    shown = at.dataframe[0].value
    assert len(shown) == 6 and shown["status"].value_counts().to_dict() == {"done": 4, "failed": 2}
    failed = shown[shown["status"] == "failed"]
    assert set(failed["file"]) == {"broken.png"} and failed["error"].str.contains("not an image").all()
    assert any("**broken.png** · occlusion:" in w.value for w in at.warning)
    assert len(at.get("image")) == 4


@pytest.mark.parametrize("name,data,needle", [
    ("notazip.zip", b"these bytes are not a ZIP", "notazip.zip is not a ZIP file"),
    ("evil.zip", zip_bytes({"../evil.png": (EXAMPLES / "cat.png").read_bytes()}), "outside its folder"),
    ("abs.zip", zip_bytes({"/tmp/evil.png": (EXAMPLES / "cat.png").read_bytes()}), "absolute path"),
    ("empty.zip", zip_bytes({"notes.txt": b"no image here"}), "holds no image"),
])
def test_bad_zip_gives_a_clear_error_and_the_page_keeps_running(name, data, needle):
    at = open_dataset()
    upload(at, name, data)
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("download_button") and at.title[0].value == "Dataset"
    # the page still works: a good ZIP next is accepted
    upload(at, "photos.zip", photos_zip())
    assert not at.error and "2 images" in markdown(at)


def test_a_folder_on_the_server(tmp_path):
    at = open_dataset()
    at.radio(key=P + "source").set_value("Folder on the server").run()
    at.text_input(key=P + "folder").set_value(str(tmp_path / "nowhere")).run()
    assert any("is not a folder on the server" in e.value for e in at.error)
    (tmp_path / "shots" / "day1").mkdir(parents=True)
    for name in ("cat.png", "rocket.png"):
        (tmp_path / "shots" / "day1" / name).write_bytes((EXAMPLES / name).read_bytes())
    at.text_input(key=P + "folder").set_value(str(tmp_path / "shots")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"**{tmp_path / 'shots'}**: 2 images" in markdown(at)
    assert "**2 images × 1 method = 2 maps**" in markdown(at)          # Sobol at its CPU defaults, not run here


def test_extract_zip_refuses_links_and_bombs_and_reuses_a_folder(tmp_path):
    link = zipfile.ZipInfo("photos/link.png")
    link.external_attr = (0o120777 << 16)              # a symbolic link to /etc/passwd
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="symbolic link"):
        extract_zip(buf.getvalue(), "links.zip", tmp_path)
    many = zip_bytes({f"{i}.png": b"x" for i in range(5)})
    with pytest.raises(DatasetError, match="holds 5 files; at most 4"):
        extract_zip(many, "many.zip", tmp_path, max_files=4)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * 5_000_000)        # 5 MB of zeros, a few kB compressed
    assert len(bomb.getvalue()) < 50_000
    with pytest.raises(DatasetError, match="unpacks to"):
        extract_zip(bomb.getvalue(), "bomb.zip", tmp_path, max_bytes=1_000_000)
    assert not any(tmp_path.iterdir())                  # nothing was written for a refused ZIP
    ds = extract_zip(photos_zip(), "photos.zip", tmp_path)
    assert ds.images == 2 and sorted(p.name for p in ds.folder.rglob("*.png")) == ["cat.png", "coffee.png"]
    assert extract_zip(photos_zip(), "again.zip", tmp_path).folder == ds.folder
    with pytest.raises(DatasetError, match="CSV line 2 names a path outside its folder"):
        write_manifest(b"path\n../../etc/passwd\n", ds, tmp_path / "m.csv")
    with pytest.raises(DatasetError, match="CSV line 3: 'photos/dog.png' is not a file of the dataset"):
        write_manifest(b"path\nphotos/cat.png\nphotos/dog.png\n", ds, tmp_path / "m.csv")
    with pytest.raises(DatasetError, match="CSV line 2: box must be four numbers"):
        write_manifest(b"path,box\nphotos/cat.png,\"1,2,3\"\n", ds, tmp_path / "m.csv")
