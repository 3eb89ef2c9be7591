"""How a dataset run reports: a one-line bar on a terminal, a log line per task otherwise, JSON lines with --json."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from runtime.estimate import fmt_seconds


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=str, sort_keys=True)


class Reporter:
    def __init__(self, quiet: bool = False, as_json: bool = False, stream=None):
        self.quiet, self.as_json = quiet, as_json
        self.stream = stream or sys.stderr
        self.bar = not quiet and not as_json and self.stream.isatty()

    def plan(self, progress) -> None:
        if self.quiet:
            return
        line = (f"{progress.tasks} tasks, {progress.skipped} already done, {progress.tasks - progress.skipped} to "
                f"run (at most {progress.budget:,} queries)")
        if self.as_json:
            print(dumps({"event": "plan", "tasks": progress.tasks, "skipped": progress.skipped,
                         "budget": progress.budget}), flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def status(self, progress) -> str:
        return (f"{progress.images_done}/{progress.images} inputs, {progress.skipped + progress.done}/{progress.tasks} "
                f"tasks, {progress.failed} failed, "
                f"{progress.rate:,.0f} q/s, ETA {fmt_seconds(progress.eta)}")

    def row(self, progress, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.as_json:
            print(dumps({"event": "row", **row}), flush=True)
        elif self.bar:
            done = progress.skipped + progress.done
            filled = int(30 * done / max(1, progress.tasks))
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.status(progress)}   ", end="",
                  file=self.stream, flush=True)
            if row["status"] != "done":
                print(f"\n{row['file']} ({row['method']}): {row['error']}", file=self.stream, flush=True)
        else:
            what = f"{row['queries']} queries, {row['seconds']:.1f} s" if row["status"] == "done" else \
                f"FAILED: {row['error']}"
            print(f"{row['file']} {row['method']}: {what} | {self.status(progress)}", file=self.stream, flush=True)

    def finish(self, progress, table, out: Path) -> None:
        failed = int((table["status"] != "done").sum()) if len(table) else 0
        summary = {"event": "summary", "inputs": progress.images, "tasks": progress.tasks, "done": len(table) - failed, "failed": failed,
                   "ran_now": progress.done, "skipped": progress.skipped, "queries": progress.queries,
                   "seconds": round(progress.elapsed, 2), "out": str(out)}
        if self.as_json:
            print(dumps(summary), flush=True)
        elif not self.quiet:
            if self.bar:
                print(file=self.stream)
            print(f"{summary['done']} of {progress.tasks} tasks done, {failed} failed, in "
                  f"{fmt_seconds(progress.elapsed)}; results in {out / 'results.parquet'} and results.csv",
                  file=self.stream, flush=True)
