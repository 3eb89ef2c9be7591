"""The Dataset page's helpers: a ZIP or a server folder of images as a run's input, the run in a background
thread, its progress, the results gallery and the downloads.

The run itself is ``runtime.batch_run.run_batch``, the same one ``saliency explain`` calls: one task per
(image, method), each written as soon as it exists, so the same settings resume where a run stopped. Its output
folder is ``cache_root()/dataset_runs/<hash of the run's spec>``; an uploaded ZIP is extracted once into
``cache_root()/datasets/<sha256 of the ZIP>``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import streamlit as st

from evaluation.metrics import STEPS
from models import BlackBox, cache_root
from models.backends import interactive_threads
from runtime.batch import SCORES, BatchSpec, Task, pending, plan
from runtime.batch_inputs import IMAGE_SUFFIXES, ManifestError, read_manifest
from runtime.batch_run import RECORD, Progress, results_table, run_batch
from runtime.batch_task import reason
from runtime.estimate import expected_seconds, query_cost
from runtime.estimate import fmt_seconds
from ui.jobs import POLL_S, plural

MAX_FILES = 2_000                     # members of an uploaded ZIP
MAX_BYTES = 2_000_000_000             # their uncompressed size (a "ZIP bomb" is refused before anything is written)
GALLERY_MAX = 48
CURVE_SCORES = ("deletion", "insertion")     # each queries the model STEPS + 1 times per map


class DatasetError(ValueError):
    """A ZIP, folder or CSV that cannot be used; the message says why, for a person."""


@dataclass
class Dataset:
    folder: Path                      # where the images are
    name: str                         # what the user gave: the ZIP's name or the folder
    images: int
    skipped: list[str] = field(default_factory=list)     # members of the ZIP that are not images


# ------------------------------------------------------------------------------------------------ inputs
def _member_path(name: str, where: str = "the ZIP", then: str = "; it was not extracted") -> PurePosixPath:
    """A relative path inside the dataset, or DatasetError for one that would land outside its folder."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise DatasetError(f"{where} names an absolute path ({name!r}){then}")
    path = PurePosixPath(clean)
    if ".." in path.parts:
        raise DatasetError(f"{where} names a path outside its folder ({name!r}){then}")
    return path


def _wanted(path: PurePosixPath) -> bool:
    """An image to extract (not macOS metadata, not a hidden file)."""
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in path.parts)
    return not hidden and path.suffix.lower() in IMAGE_SUFFIXES


def check_zip(zf: zipfile.ZipFile, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES
              ) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], list[str]]:
    """The image members to extract and the names skipped; DatasetError for a ZIP refused as a whole."""
    files = [i for i in zf.infolist() if not i.is_dir()]
    if len(files) > max_files:
        raise DatasetError(f"the ZIP holds {len(files):,} files; at most {max_files:,} are accepted")
    total = sum(i.file_size for i in files)
    if total > max_bytes:
        raise DatasetError(f"the ZIP unpacks to {total / 1e6:,.0f} MB; at most {max_bytes / 1e6:,.0f} MB "
                           "are accepted")
    keep, skipped = [], []
    for info in files:
        path = _member_path(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"the ZIP holds a symbolic link ({info.filename!r}); it was not extracted")
        if info.flag_bits & 0x1:
            raise DatasetError(f"the ZIP is encrypted ({info.filename!r}); upload an unencrypted one")
        if _wanted(path):
            keep.append((info, path))
        else:
            skipped.append(info.filename)
    if not keep:
        raise DatasetError("the ZIP holds no image (" + ", ".join(s.lower() for s in IMAGE_SUFFIXES) + ")")
    return keep, skipped


def _extract(zf: zipfile.ZipFile, members, dest: Path, max_bytes: int) -> None:
    written = 0
    for info, path in members:
        target = dest.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:        # sizes in the headers can lie: count what really comes out
                    raise DatasetError(f"the ZIP unpacks to more than {max_bytes / 1e6:,.0f} MB; refused")
                dst.write(chunk)


def extract_zip(data: bytes, name: str = "upload.zip", root: Path | None = None, *, max_files: int = MAX_FILES,
                max_bytes: int = MAX_BYTES) -> Dataset:
    """Extract the images of an uploaded ZIP into ``root/<sha256 of the ZIP>`` (once: the same ZIP again reuses
    the folder). Path traversal, absolute names, symbolic links, encryption, too many files or too many bytes
    refuse the whole ZIP; members that are not images are skipped and listed."""
    root = Path(root or cache_root() / "datasets")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DatasetError(f"{name} is not a ZIP file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members, skipped = check_zip(zf, max_files, max_bytes)
            folder = root / hashlib.sha256(data).hexdigest()
            if not (folder / ".complete").exists():
                tmp = root / f".tmp-{uuid.uuid4().hex}"
                try:
                    _extract(zf, members, tmp, max_bytes)
                    (tmp / ".complete").touch()
                    if not (folder / ".complete").exists():     # another session may have finished it meanwhile
                        shutil.rmtree(folder, ignore_errors=True)   # a half-written folder of an older attempt
                        os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as e:
        raise DatasetError(f"{name} could not be extracted ({e})") from None
    return Dataset(folder, name, len(members), skipped)


def server_folder(text: str) -> Dataset:
    """A folder on the machine that runs the app, holding images (searched recursively)."""
    if not text.strip():
        raise DatasetError("type the path of a folder on the server")
    folder = Path(text.strip()).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder on the server")
    n = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not n:
        raise DatasetError(f"{folder} holds no image (" + ", ".join(IMAGE_SUFFIXES) + ")")
    return Dataset(folder.resolve(), str(folder), n)


def _inside(folder: Path, text: str, where: str) -> str:
    path = folder.joinpath(*_member_path(text.strip(), where, "").parts) if text.strip() else None
    if path is None or not path.is_file():
        raise DatasetError(f"{where}: {text!r} is not a file of the dataset")
    return str(path)


def write_manifest(data: bytes, ds: Dataset, dest: Path | None = None) -> tuple[Path, int]:
    """The ground-truth CSV (columns path, target, box "x0,y0,x1,y1", mask; paths relative to the ZIP root or the
    folder) checked and written as the run's manifest, paths made absolute; (manifest, rows)."""
    try:
        rows = list(csv.DictReader(data.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"the ground-truth CSV cannot be read ({e})") from None
    if not rows or "path" not in rows[0]:
        raise DatasetError("the ground-truth CSV needs a header with a 'path' column (and target, box, mask)")
    out = []
    for n, row in enumerate(rows, 2):       # line numbers as a spreadsheet shows them (1 is the header)
        where = f"CSV line {n}"
        out.append({"path": _inside(ds.folder, row.get("path") or "", where), "target": row.get("target") or "",
                    "box": row.get("box") or "",
                    "mask": _inside(ds.folder, row["mask"], where) if (row.get("mask") or "").strip() else ""})
    digest = hashlib.sha256(data + str(ds.folder).encode()).hexdigest()[:16]
    dest = dest or cache_root() / "datasets" / "manifests" / f"{digest}.csv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, ["path", "target", "box", "mask"])
    writer.writeheader()
    writer.writerows(out)
    if not dest.exists() or dest.read_text() != text.getvalue():   # atomic: a run may be reading it
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text.getvalue())
        os.replace(tmp, dest)
    try:
        read_manifest(dest)                 # the boxes, checked as the run will read them
    except ManifestError as e:
        dest.unlink(missing_ok=True)
        text = re.sub(r"row (\d+)", lambda m: f"line {int(m.group(1)) + 1}", str(e).replace(str(dest), "CSV"))
        raise DatasetError(text) from None
    return dest, len(out)


SOURCES = ("Upload a ZIP", "Folder on the server")


def _zip_widget(key_prefix: str) -> Dataset | None:
    up = st.file_uploader("ZIP of images", type=["zip"], key=f"{key_prefix}zip",
                          help=f"Up to {MAX_FILES:,} files, {MAX_BYTES / 1e9:.0f} GB unpacked; sub-folders are fine. "
                               "Files that are not images are skipped.")
    if up is None:
        return None
    cached = st.session_state.get(f"{key_prefix}zip_dataset")
    if cached and cached[0] == up.file_id:            # extracted at an earlier rerun: no need to hash it again
        return cached[1]
    ds = extract_zip(up.getvalue(), up.name)
    st.session_state[f"{key_prefix}zip_dataset"] = (up.file_id, ds)
    return ds


def _with_ground_truth(key_prefix: str, ds: Dataset) -> str | None:
    """The run's input: the dataset's folder, or the manifest written from the ground-truth CSV (None: bad CSV)."""
    up = st.file_uploader("Ground truth (optional CSV: path, target, box, mask)", type=["csv"], key=f"{key_prefix}gt",
                          help="One row per image: path relative to the ZIP's root (or the folder), and optionally "
                               "target (class id or name), box \"x0,y0,x1,y1\" in the image's pixels, mask (an "
                               "image of the dataset, white inside). Only the rows' images are explained.")
    if up is None:
        return str(ds.folder)
    try:
        manifest, n = write_manifest(up.getvalue(), ds)
    except DatasetError as e:
        st.error(f"**{up.name}**: {e}")
        return None
    left = ds.images - len({item.path for item in read_manifest(manifest)})
    st.caption(f"{plural(n, 'row', 'rows')} of ground truth: the run explains these images"
               + (f" ({plural(left, 'image', 'images')} of the dataset not in the CSV are left out)." if left > 0
                  else "."))
    return str(manifest)


def dataset_input(key_prefix: str) -> tuple[Dataset | None, str | None]:
    """The images (a ZIP upload or a server folder) and the run's input path; (None, None) until both are usable
    (the reason is shown)."""
    source = st.radio("Images from", SOURCES, horizontal=True, key=f"{key_prefix}source")
    try:
        if source == SOURCES[0]:
            ds = _zip_widget(key_prefix)
        else:
            text = st.text_input("Folder on the server", key=f"{key_prefix}folder", placeholder="/data/photos",
                                 help="A folder on the machine that runs this app; images in sub-folders count.")
            ds = server_folder(text) if text.strip() else None
    except DatasetError as e:
        st.error(str(e))
        ds = None
    if ds is None:
        return None, None
    note = f"**{ds.name}**: {plural(ds.images, 'image', 'images')}"
    if ds.skipped:
        shown = ", ".join(ds.skipped[:5]) + (", …" if len(ds.skipped) > 5 else "")
        note += f"; {plural(len(ds.skipped), 'other file', 'other files')} skipped (not images: {shown})"
    st.caption(note + ".")
    return ds, _with_ground_truth(key_prefix, ds)


# ------------------------------------------------------------------------------------------------ spec and plan
def build_spec(inputs: str, model: str, methods: list[tuple[str, dict[str, Any]]], *, target: str, seed: int,
               scores: list[str], device: str) -> BatchSpec:
    """The run's spec; its output folder is named by the hash of everything else, so the same settings resume."""
    spec = BatchSpec(inputs=[inputs], model=model, methods=methods, out="", target=target.strip() or "top1",
                     seed=int(seed), scores=tuple(s for s in SCORES if s in scores), device=device,
                     threads=interactive_threads())
    digest = hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    spec.out = str(cache_root() / "dataset_runs" / digest)
    return spec


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the dataset…")
def cached_plan(spec_json: str, _bb: BlackBox) -> list[Task]:
    """Every task of the run (files hashed, targets checked); re-read after a minute, for a folder that changes."""
    return plan(BatchSpec.from_json(json.loads(spec_json)), _bb)


def done_count(tasks: list[Task], out: Path) -> int:
    return len(tasks) - len(pending(tasks, out))


def budget_text(tasks: list[Task], out: Path, bb: BlackBox, scores: tuple[str, ...], seed: int) -> str:
    """The line before Run: maps, queries (the explanations' and the scores'), the expected time here."""
    todo = pending(tasks, out)
    images = len({t.index for t in tasks})
    per_map = len([s for s in scores if s in CURVE_SCORES]) * (STEPS + 1)
    explain_q = sum(t.budget for t in tasks)
    text = (f"**{plural(images, 'image', 'images')} × {plural(len(tasks) // max(images, 1), 'method', 'methods')}"
            f" = {plural(len(tasks), 'map', 'maps')}**, {explain_q:,} queries for the explanations"
            + (f" + {len(tasks) * per_map:,} for the scores" if per_map else "")
            + f" = **{plural(explain_q + len(tasks) * per_map, 'query', 'queries')}** in all.")
    if not todo:
        return text
    seconds = 0.0
    for method in dict.fromkeys(t.method for t in todo):
        mine = [t for t in todo if t.method == method]
        try:
            one = expected_seconds(bb, method, mine[0].params, tuple(bb.input_shape), seed)
        except Exception:   # an estimate that fails costs the time, not the page
            one = None
        if one is None:
            return text
        seconds += one * len(mine)
    seconds += len(todo) * per_map * query_cost(bb)
    left = f" for the {len(todo):,} left" if len(todo) < len(tasks) else ""
    return text + (f" Expected ≈ **{fmt_seconds(seconds)}**{left} on {bb.device.type.upper()} "
                   "(measured here; decoding the files comes on top).")


# ------------------------------------------------------------------------------------------------ runs
@dataclass
class DatasetRun:
    """A dataset run in a background thread; the page polls it (never a tensor here, only counts and rows)."""
    spec: BatchSpec
    bb: BlackBox | None = None          # the page's shared model (st.cache_resource), not a second copy
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    progress: Progress | None = None
    last: dict[str, Any] | None = None
    status: str = "starting"            # starting, running, finished, stopped, failed
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def work(self) -> None:
        def on_plan(p: Progress) -> None:
            self.progress, self.status = p, "running"

        def on_row(p: Progress, row: dict) -> None:
            self.progress, self.last = p, row
        try:
            run_batch(self.spec, on_row, stop=self.stop, on_plan=on_plan, bb=self.bb)
            self.status = "stopped" if self.stop.is_set() else "finished"
        except Exception as e:  # the model did not load, the manifest changed under us: say so on the page
            self.status, self.error = "failed", reason(e)


# One run per output folder in this process, whichever session started it: a second session with the same
# settings watches the same run rather than starting a twin that writes the same files.
_RUNS: dict[str, DatasetRun] = {}
_LOCK = threading.Lock()


def get_run(out: str) -> DatasetRun | None:
    with _LOCK:
        return _RUNS.get(out)


def start_run(spec: BatchSpec, bb: BlackBox | None = None) -> DatasetRun:
    with _LOCK:
        run = _RUNS.get(spec.out)
        if run is not None and run.running:
            return run
        run = _RUNS[spec.out] = DatasetRun(spec, bb)
        run.thread = threading.Thread(target=run.work, name=f"dataset-run-{Path(spec.out).name}", daemon=True)
        run.thread.start()
    return run


def progress_text(run: DatasetRun) -> tuple[float, str]:
    p = run.progress
    if p is None:
        return 0.0, "Opening the model and reading the dataset…"
    finished = p.skipped + p.done
    text = (f"{finished:,} / {p.tasks:,} maps · {p.failed:,} failed · {p.rate:,.0f} queries/s · "
            f"elapsed {fmt_seconds(p.elapsed)}")
    if run.running:
        text += f" · ETA {fmt_seconds(p.eta)}"
    return finished / max(p.tasks, 1), text + f" · {run.status}"


def progress_view(run: DatasetRun, interval: float = POLL_S) -> None:
    """The run's progress now and every ``interval`` s while it runs; the whole page once more when it ends."""
    polling = run.running

    @st.fragment(run_every=interval if polling else None)
    def _view() -> None:
        share, text = progress_text(run)
        st.progress(min(1.0, share), text=text)
        if run.last is not None and run.running:
            st.caption(f"Last: {Path(run.last['file']).name} · {run.last['method']} · {run.last['status']}")
        if run.error:
            st.error(f"The run stopped: {run.error}")
        if polling and not run.running:
            st.rerun()

    _view()


# ------------------------------------------------------------------------------------------------ results
def results(tasks: list[Task], out: Path) -> pd.DataFrame:
    """Every finished row of this plan, in the plan's order (the run's full table, as results.csv has it)."""
    return results_table(out, tasks)


def relative_files(table: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The table with each file named relative to the dataset's folder (as the page shows it)."""
    def rel(f: str) -> str:
        try:
            return Path(f).relative_to(folder).as_posix()
        except ValueError:
            return Path(f).name
    return table.assign(file=table["file"].map(rel))


def sort_columns(table: pd.DataFrame) -> list[str]:
    return [s for s in SCORES if s in table and table[s].notna().any()] + ["queries", "seconds", "file", "method"]


def gallery(table: pd.DataFrame, out: Path, by: str, limit: int = GALLERY_MAX, per_row: int = 6) -> None:
    """The overlays of the done rows in the table's order, captioned file · method · the sort score."""
    done = table[table["status"] == "done"]
    if done.empty:
        st.info("No map to show: every task failed (the reasons are in the table).")
        return
    shown = done.head(limit)
    if len(done) > limit:
        st.caption(f"Showing the first {limit} of {len(done):,} maps in this order; all of them are in the ZIP.")
    for start in range(0, len(shown), per_row):
        cols = st.columns(per_row)
        for col, (_, row) in zip(cols, shown.iloc[start:start + per_row].iterrows()):
            value = row.get(by)
            score = f" · {by} {value:.3f}" if by in SCORES and pd.notna(value) else ""
            col.image(str(out / row["overlay"]), caption=f"{row['file']} · {row['method']}{score}", width="stretch")


def table_bytes(table: pd.DataFrame) -> tuple[bytes, bytes]:
    """(CSV, Parquet) of the results table."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return table.to_csv(index=False).encode(), buf.getvalue()


def results_zip(table: pd.DataFrame, out: Path) -> bytes:
    """maps/ (the .npy maps and overlay PNGs), results.csv, results.parquet and run.json, built in memory."""
    csv_bytes, parquet_bytes = table_bytes(table)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("results.csv", csv_bytes)
        z.writestr("results.parquet", parquet_bytes)
        if (out / RECORD).exists():
            z.write(out / RECORD, RECORD)
        for col in ("map", "overlay"):
            for rel in table[col].dropna() if col in table else ():
                if (out / rel).is_file():
                    z.write(out / rel, rel)
    return buf.getvalue()
