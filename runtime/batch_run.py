"""Drive a dataset run: plan, skip what is done, explain the rest (here or on Ray), write the table and record.

``run_batch(spec)`` is what ``saliency explain``, ``saliency rerun`` and the Dataset page call. Progress goes to
``on_row(progress, row)`` after each task, so a terminal bar, log lines, JSON lines or a web page can show it.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from evaluation.provenance import package_versions

from .batch import BatchSpec, Task, pending, plan, row_path, write_json
from .batch_task import run_task

RECORD = "run.json"


@dataclass
class Progress:
    tasks: int                      # tasks in the run
    skipped: int                    # done by an earlier, interrupted run
    budget: int                     # queries the tasks left to do will make at most
    done: int = 0                   # tasks finished in this run (failed ones included)
    failed: int = 0                 # failed tasks of the whole run, an earlier interrupted one's included
    queries: int = 0
    budget_done: int = 0
    started: float = field(default_factory=time.perf_counter)
    left: dict[int, int] = field(default_factory=dict)      # input index -> its tasks not finished yet
    images: int = 0                                          # inputs in the run

    @property
    def images_done(self) -> int:
        """Inputs whose every method has finished (before or in this run)."""
        return self.images - sum(1 for n in self.left.values() if n > 0)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        """Queries per second so far (0 before the first task ends)."""
        return self.queries / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the time the finished tasks' budgets took; None before the first one."""
        if self.budget_done <= 0:
            return None
        return self.elapsed / self.budget_done * max(0, self.budget - self.budget_done)

    def count(self, row: dict[str, Any], budget: int) -> None:
        self.done += 1
        self.failed += row["status"] != "done"
        self.queries += int(row.get("queries") or 0)
        self.budget_done += budget
        if row.get("index") in self.left:
            self.left[row["index"]] -= 1


def _table_value(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v


def results_table(out: Path, tasks: list[Task]) -> pd.DataFrame:
    """One row per finished task of this run, in the run's order (rows of other runs in the same folder are left
    out): what results.parquet holds, readable while the run goes on."""
    rows = []
    for t in tasks:
        p = row_path(out, t.key)
        if p.exists():
            rows.append({k: _table_value(v) for k, v in json.loads(p.read_text()).items()})
    table = pd.DataFrame(rows)
    if "target" in table:
        table["target"] = table["target"].astype("Int64")      # a failed row has none: not a float column
    return table


def write_table(out: Path, tasks: list[Task]) -> pd.DataFrame:
    table = results_table(out, tasks)
    for name, write in (("results.parquet", lambda p: table.to_parquet(p, index=False)),
                        ("results.csv", lambda p: table.to_csv(p, index=False))):
        tmp = out / f".{name}.{uuid.uuid4().hex}.tmp"
        write(tmp)
        os.replace(tmp, out / name)
    return table


def _record(spec: BatchSpec, bb, tasks: list[Task], status: str, progress: Progress | None) -> dict[str, Any]:
    return {"tool": "saliency", "spec": spec.to_json(), "status": status, "model_id": bb.id,
            "backend": bb.backend, "device": str(bb.device), "tasks": len(tasks),
            "done_now": progress.done if progress else 0, "failed_now": progress.failed if progress else 0,
            "skipped": progress.skipped if progress else 0, "seconds": round(progress.elapsed, 2) if progress else 0,
            "versions": package_versions(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _rows(spec: BatchSpec, bb, todo: list[Task], out: Path, stop: threading.Event | None) -> Iterator[dict]:
    if spec.engine == "ray":
        from .batch_ray import run_on_ray
        yield from run_on_ray(spec, todo, out)
        return
    if spec.engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {spec.engine!r}")
    for task in todo:
        if stop is not None and stop.is_set():
            return
        yield run_task(spec, bb, task, out)


def check_spending(bb, queries: int) -> None:
    """A paid API's cap holds for the whole batch: a run that could cost more does not start."""
    cap = getattr(bb, "max_cost", None)
    if cap is None or not hasattr(bb, "estimate_cost"):
        return
    cost = bb.estimate_cost(queries)
    if cost > cap + 1e-12:
        raise ValueError(f"the batch's {queries:,} queries could cost about {cost:.4f}, over the spending cap of "
                         f"{cap:g}: raise --max-cost, or explain fewer inputs or with a smaller budget")


def run_batch(spec: BatchSpec, on_row: Callable[[Progress, dict], None] | None = None, *,
              stop: threading.Event | None = None, on_plan: Callable[[Progress], None] | None = None,
              bb=None) -> tuple[pd.DataFrame, Progress]:
    """Run (or resume) ``spec``; the results table of every task of the run, and the progress of this one.
    ``bb``: the spec's model already open (the web app's shared copy); by default the spec opens it."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    bb = bb if bb is not None else spec.open_model()
    tasks = plan(spec, bb)
    todo = pending(tasks, out)
    budgets = {t.key: t.budget for t in todo}
    progress = Progress(tasks=len(tasks), skipped=len(tasks) - len(todo), budget=sum(budgets.values()),
                        images=len({t.index for t in tasks}))
    for t in todo:
        progress.left[t.index] = progress.left.get(t.index, 0) + 1
    pending_keys = {t.key for t in todo}
    progress.failed = sum(json.loads(row_path(out, t.key).read_text()).get("status") != "done"
                          for t in tasks if t.key not in pending_keys)    # failures of the earlier run count too
    check_spending(bb, progress.budget)
    write_json(out / RECORD, _record(spec, bb, tasks, "running", progress))
    if on_plan:
        on_plan(progress)
    for row in _rows(spec, bb, todo, out, stop):
        progress.count(row, budgets.get(row["key"], 0))
        if on_row:
            on_row(progress, row)
    status = "stopped" if stop is not None and stop.is_set() else "finished"
    table = write_table(out, tasks)
    write_json(out / RECORD, _record(spec, bb, tasks, status, progress))
    return table, progress


def compare_maps(first: pd.DataFrame, first_dir: Path, second: pd.DataFrame, second_dir: Path) -> dict[str, Any]:
    """How far a rerun's maps are from the recorded ones: tasks compared, equal (bitwise), the largest difference."""
    a = first[first["status"] == "done"].set_index("key")
    b = second[second["status"] == "done"].set_index("key")
    keys = sorted(set(a.index) & set(b.index))
    diffs = [float(np.abs(np.load(first_dir / a.at[k, "map"]) - np.load(second_dir / b.at[k, "map"])).max())
             for k in keys]
    return {"compared": len(keys), "equal": sum(d == 0 for d in diffs), "max_abs_diff": max(diffs, default=0.0),
            "only_in_record": len(set(a.index) - set(b.index)), "only_in_rerun": len(set(b.index) - set(a.index))}
