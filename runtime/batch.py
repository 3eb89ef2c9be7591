"""Dataset runs: every (input, method) of a batch explained once, each result written as soon as it exists.

The command line, the Dataset page and the Ray engine (``runtime/batch_ray.py``) share this module. The output
folder holds everything a run needs to resume and to be read:

    run.json                 the run record: the spec (``BatchSpec``) that reruns it, versions, counts
    rows/<key>.json          one row per finished (input, method), written atomically: the resume marker
    maps/<name>.npy/.png     the map and its overlay
    results.parquet / .csv   the table of every row, rebuilt from rows/ at the end

``key`` is the engine's cache key (input bytes' sha256, model id, method, its full parameters, seed, target,
method version): a killed run started again skips every task whose row exists and loses nothing, since a row
is written only after its map. A file that cannot be read or decoded gets a failed row with the reason.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from explainers import get_explainer
from explainers.registry import explainer_class
from models import BlackBox, explained_view
from models.open import open_model

from .batch_inputs import Item, expand_inputs
from .engine import Engine, sha256_bytes

SCORES = ("deletion", "insertion", "pointing", "iou")
GROUND_TRUTH_SCORES = ("pointing", "iou")


@dataclass
class BatchSpec:
    """Everything that determines a dataset run's results (and nothing that does not, like ``--quiet``)."""
    inputs: list[str]
    model: str
    methods: list[tuple[str, dict[str, Any]]]
    out: str
    target: str = "top1"
    seed: int = 0
    scores: tuple[str, ...] = ()
    backend: str = "auto"
    threads: int | None = None
    device: str | None = None
    input_shape: tuple[int, int, int] | None = None
    labels_file: str | None = None
    engine: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    # a vision-language chat API at ``model`` (a base URL): ChatBlackBox's keyword arguments (model, prompt,
    # candidates or yes_no, api_key_env, prices, max_cost, samples); the key itself is never part of a spec
    chat: dict[str, Any] | None = None
    rate_limit: float | None = None        # requests per second to a model server or chat API, for the whole run

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["methods"] = [[m, p] for m, p in self.methods]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BatchSpec":
        d = dict(d)
        d["methods"] = [(m, dict(p)) for m, p in d["methods"]]
        d["scores"] = tuple(d.get("scores") or ())
        if d.get("input_shape"):
            d["input_shape"] = tuple(d["input_shape"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def open_model(self, share: int = 1) -> BlackBox:
        """The run's model; ``share``: how many workers split the run's rate limit (each gets its part)."""
        rate = self.rate_limit / share if self.rate_limit else None
        if self.chat:
            from models import ChatBlackBox
            return ChatBlackBox(self.model, **self.chat, rate_limit=rate)
        return open_model(self.model, device=self.device, backend=self.backend, threads=self.threads,
                          input_shape=self.input_shape, labels_file=self.labels_file, rate_limit=rate)


@dataclass
class Task:
    """One (input, method) to explain; plain values only, so a Ray worker receives it as a row."""
    index: int
    path: str
    sha256: str
    method: str
    params: dict[str, Any]
    target: int | None
    key: str
    budget: int
    box: tuple[int, int, int, int] | None = None
    mask: str | None = None
    error: str | None = None          # known before running (unreadable file, bad manifest target)


def resolve_target(text: str | int | None, labels: list[str]) -> int | None:
    """``top1`` (or None): the model's top class, decided per input; a class id; a class name (any case)."""
    if text is None or str(text).strip().lower() in ("", "top1"):
        return None
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        if labels and int(s) >= len(labels):
            raise ValueError(f"target {s} is not a class of this model (it has {len(labels)}: 0..{len(labels) - 1})")
        return int(s)
    by_name = {lab.lower(): i for i, lab in enumerate(labels)}
    if s.lower() in by_name:
        return by_name[s.lower()]
    near = [lab for lab in labels if s.lower() in lab.lower()][:5]
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise ValueError(f"target {s!r} is neither 'top1', a class id nor a class name of this model{hint}")


def method_params(name: str, given: dict[str, Any], device) -> dict[str, Any]:
    """The app's defaults for ``device`` (a CPU run is kept short), then what the user set."""
    return {**explainer_class(name).defaults(device), **given}


def _file_sha(path: str) -> tuple[str, str | None]:
    try:
        return sha256_bytes(Path(path).read_bytes()), None
    except OSError as e:
        return sha256_bytes(f"unreadable:{path}".encode()), f"cannot be read ({e.strerror or e})"


def plan(spec: BatchSpec, bb: BlackBox, items: list[Item] | None = None) -> list[Task]:
    """Every task of the run in order (item, then method), keys included."""
    items = expand_inputs(spec.inputs) if items is None else items
    run_target = resolve_target(spec.target, bb.labels)     # a bad --target fails the run before any work
    explainers = [get_explainer(m, seed=spec.seed, **method_params(m, p, bb.device)) for m, p in spec.methods]
    budgets = [e.query_budget(tuple(bb.input_shape)) for e in explainers]
    model_id = explained_view(bb).id                    # the model as the methods query it, as the app keys it
    tasks = []
    for i, item in enumerate(items):
        sha, error = _file_sha(item.path)
        try:
            target = resolve_target(item.target, bb.labels) if item.target is not None else run_target
        except ValueError as e:
            target, error = None, error or str(e)
        for e, budget in zip(explainers, budgets):
            key = Engine.cache_key(sha, model_id, e.name, dict(e.config), spec.seed, target, e.version)
            tasks.append(Task(i, item.path, sha, e.name, dict(e.config), target, key,
                              budget + (1 if target is None else 0), item.box, item.mask, error))
    return tasks


def row_path(out: Path, key: str) -> Path:
    return out / "rows" / f"{key}.json"


def write_json(path: Path, payload: Any) -> None:
    """Atomic: a reader (or a resumed run) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def pending(tasks: Iterable[Task], out: Path) -> list[Task]:
    return [t for t in tasks if not row_path(out, t.key).exists()]
