"""The Ray engine of dataset runs: the tasks as a Ray Dataset, explained by a pool of actors, each holding its model.

Each actor opens the model from the spec's string once (``models.open``) and runs ``batch_task.run_task`` on one
task at a time, so it writes exactly what the local engine writes. Actors take one GPU each where the cluster
has GPUs, else ``CPUS_PER_WORKER`` CPUs; a model behind HTTP gets ``REMOTE_WORKERS`` actors (its server's rate
limit, not the cluster, bounds it), unless ``--workers`` says otherwise, and each actor takes an equal part of
the run's ``--rate-limit``, so the cluster as a whole keeps to it. A killed actor is restarted and its
task retried (Ray Data's default for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); rows are files
keyed by task, so a retry rewrites the same row and nothing is counted twice. A task's own errors never kill
its actor: ``run_task`` turns them into failed rows.

On a multi-node cluster the output folder must be on storage every node sees, and the project installed on
every node (``pip install .``); on one machine neither is needed.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from .batch import BatchSpec, Task, write_json
from .batch_task import run_task

CPUS_PER_WORKER = 1
RUNNING = ".running"          # <pid>.json: the task each actor is on (what a stuck run is doing; the tests' kill)
REMOTE_WORKERS = 4


class TaskWorker:
    """One Ray actor: a model opened once, then one task per call."""

    def __init__(self, spec: dict[str, Any], out: str, threads: int | None, share: int):
        self.spec = BatchSpec.from_json(spec)
        self.spec.threads = self.spec.threads or threads    # a CPU actor uses the cores Ray gave it, no more
        self.out = Path(out)
        self.bb = self.spec.open_model(share)              # its part of a remote model's rate limit
        self.busy = self.out / RUNNING / f"{os.getpid()}.json"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        rows = []
        for text in batch["task"]:
            task = Task(**json.loads(str(text)))
            write_json(self.busy, {"key": task.key, "file": task.path, "method": task.method})
            rows.append(json.dumps(run_task(self.spec, self.bb, task, self.out), default=str))
            self.busy.unlink(missing_ok=True)
        return {"row": rows}


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[1])


def _start(spec: BatchSpec) -> bool:
    """Join ``spec.ray_address`` or start a local Ray; True when this call started it (and must stop it)."""
    import ray
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k.startswith("SALIENCY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_project_root(), os.environ.get("PYTHONPATH")) if p)
    ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})
    return True


def pool(spec: BatchSpec, tasks: int) -> tuple[int, dict[str, float]]:
    """(actors, resources per actor) for this cluster and model."""
    import ray
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if spec.model.startswith(("http://", "https://")):
        size, each = spec.workers or REMOTE_WORKERS, {"num_cpus": 0.5}
    elif gpus and spec.device != "cpu":
        size, each = spec.workers or gpus, {"num_gpus": 1}
    else:
        size = spec.workers or max(1, int(resources.get("CPU", 1)) // CPUS_PER_WORKER)
        each = {"num_cpus": CPUS_PER_WORKER}
    return max(1, min(size, tasks)), each


def run_on_ray(spec: BatchSpec, todo: list[Task], out: Path) -> Iterator[dict[str, Any]]:
    """Rows of ``todo`` as the actors finish them (any order)."""
    if not todo:
        return
    import logging
    import ray
    import ray.data
    started = _start(spec)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False   # the command's own progress is the one to read
    try:
        size, each = pool(spec, len(todo))
        ds = ray.data.from_items([{"task": json.dumps(asdict(t))} for t in todo], override_num_blocks=len(todo))
        threads = None if "num_gpus" in each else CPUS_PER_WORKER
        rows = ds.map_batches(TaskWorker, fn_constructor_kwargs={"spec": spec.to_json(), "out": str(out),
                                                                 "threads": threads, "share": size},
                              batch_size=1, compute=ray.data.ActorPoolStrategy(
                                  size=size, max_tasks_in_flight_per_actor=1), **each)
        for row in rows.iter_rows():
            yield json.loads(row["row"])
    finally:
        if started:
            ray.shutdown()
