"""The ``saliency`` command: explain a dataset, rerun a recorded run, serve a model, start the web app.

    saliency explain photos/ --model efficientnet_lite0 --method sobol --method rise --out runs/a
    saliency explain manifest.csv --method lr --param lr.nb_samples=64 --score deletion,iou --out runs/b
    saliency explain photos/ --method sobol --engine ray [--workers 2] [--ray-address auto] --out runs/c
    saliency rerun runs/a/run.json --out runs/a-again
    saliency serve efficientnet_lite0 --port 8000
    saliency app [--port 8501]

Exit status: 0 when every task is done, 1 when some failed (their rows say why), 2 for a usage error.
"""
from __future__ import annotations

import argparse
import os
import sys

PROG = "saliency"


def _add_run_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", required=True, help="output folder (created; a run started again resumes in it)")
    ap.add_argument("--engine", choices=("local", "ray"), default=None,
                    help="local (this process) or ray (Ray Data actors; default local)")
    ap.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else one per CPU; 4 for a model server)")
    ap.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    ap.add_argument("--retry-failed", action="store_true", help="explain again the inputs that failed before")
    ap.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    ap.add_argument("--json", action="store_true", help="one JSON line per finished task, then a summary line")


def parser() -> argparse.ArgumentParser:
    from .commands import explain_options
    ap = argparse.ArgumentParser(prog=PROG, description="Explain image and audio classifiers by querying them only.",
                                 epilog="Run 'saliency COMMAND --help' for a command's options.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ex = sub.add_parser("explain", help="explain files, folders, globs or a CSV/JSONL manifest")
    explain_options(ex)
    _add_run_options(ex)
    rr = sub.add_parser("rerun", help="run a recorded run again and compare its maps with the record's")
    rr.add_argument("record", help="the run.json of an earlier run")
    _add_run_options(rr)
    sv = sub.add_parser("serve", help="serve a model over HTTP (models/http.py protocol)", add_help=False)
    sv.add_argument("args", nargs=argparse.REMAINDER)
    app = sub.add_parser("app", help="start the web app")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--host", default="127.0.0.1")
    sub.add_parser("methods", help="list the methods and their parameters")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:                 # its own parser, as python -m models.serve has it
        from models.serve import main as serve_main
        return serve_main(argv[1:], prog=f"{PROG} serve")
    args = parser().parse_args(argv)
    if args.command == "app":
        from .app_server import ROOT, app_command
        os.chdir(ROOT)                        # .streamlit/config.toml beside app.py applies
        cmd = app_command(args.host, args.port)
        os.execv(cmd[0], cmd)                 # streamlit becomes this process: a signal to it stops the app
    if args.command == "methods":
        from .commands import print_methods
        return print_methods()
    from .commands import explain, rerun
    try:
        return explain(args) if args.command == "explain" else rerun(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


def entry() -> None:                      # [project.scripts]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
