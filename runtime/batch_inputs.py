"""What a dataset run explains: files, folders, globs and CSV / JSONL manifests, expanded to one ``Item`` per file.

A manifest row names a ``path`` (relative to the manifest) and optionally a ``target`` (class id or name), a
ground-truth ``box`` ("x0,y0,x1,y1" in the image's own pixels) and a ground-truth ``mask`` (an image the
size of the input, non-zero inside). Anything else in the row is ignored. The order is the order given, a folder
sorted by name, so a run and its resumption walk the items alike.
"""
from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


class ManifestError(ValueError):
    """A manifest or input argument that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Item:
    path: str
    target: str | None = None              # per-item target (manifest); None: the run's --target
    box: tuple[int, int, int, int] | None = None
    mask: str | None = None


def _box(text: object, where: str) -> tuple[int, int, int, int] | None:
    if text in (None, ""):
        return None
    parts = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    try:
        x0, y0, x1, y1 = (int(round(float(p))) for p in parts)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: box must be four numbers x0,y0,x1,y1, got {text!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise ManifestError(f"{where}: box {text!r} is empty (x1 <= x0 or y1 <= y0)")
    return (x0, y0, x1, y1)


def _rows(manifest: Path) -> list[dict]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{manifest}: cannot be read ({e})") from None
    if manifest.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ManifestError(f"{manifest} line {n}: not JSON ({e.msg})") from None
    return rows


def read_manifest(manifest: Path) -> list[Item]:
    items = []
    for n, row in enumerate(_rows(manifest), 1):
        where = f"{manifest} row {n}"
        if not isinstance(row, dict) or not row.get("path"):
            raise ManifestError(f"{where}: needs a 'path'")
        path = Path(str(row["path"]))
        path = path if path.is_absolute() else manifest.parent / path
        target = row.get("target")
        mask = row.get("mask")
        items.append(Item(str(path), None if target in (None, "") else str(target), _box(row.get("box"), where),
                          str(manifest.parent / mask) if mask else None))
    return items


def _media(folder: Path) -> list[Path]:
    wanted = IMAGE_SUFFIXES + AUDIO_SUFFIXES
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in wanted)


def expand_inputs(args: list[str]) -> list[Item]:
    """One item per file, in the order given; a missing path or an empty glob is an error, not a silent skip."""
    items: list[Item] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            items += [Item(str(f)) for f in _media(p)]
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            items += read_manifest(p)
        elif p.is_file():
            items.append(Item(str(p)))
        elif any(ch in arg for ch in "*?["):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise ManifestError(f"{arg}: the pattern matches no file")
            items += expand_inputs(matches)
        else:
            raise ManifestError(f"{arg}: no such file or folder")
    return items
