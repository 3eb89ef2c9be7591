"""What ``saliency explain`` and ``saliency rerun`` do: arguments to a ``BatchSpec``, the run, its report."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .progress import Reporter


def explain_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("paths", nargs="+", metavar="PATH",
                    help="images or audio clips, folders, globs, or a CSV/JSONL manifest (path, target, box, mask)")
    ap.add_argument("--model", "-m", default="efficientnet_lite0",
                    help="a registered model, an .onnx or TorchScript file, or an http(s):// model server")
    ap.add_argument("--method", action="append", required=True, metavar="NAME",
                    help="a method (repeat, or comma-separate, for several): see 'saliency methods'")
    ap.add_argument("--param", action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                    help="a method parameter; without METHOD. it goes to every chosen method that has it")
    ap.add_argument("--target", default="top1", help="top1 (the model's top class), a class id or a class name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score", default="", help="comma-separated: deletion, insertion, pointing, iou "
                                                "(pointing and iou where a box or mask is given)")
    ap.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | compile")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: measured)")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: CUDA when present)")
    ap.add_argument("--input-shape", default=None, help="C,H,W of a TorchScript file's input (default 3,224,224)")
    ap.add_argument("--labels", default=None, help="a text file of class names, one per line, for a model file")
    ap.add_argument("--rate-limit", type=float, default=None,
                    help="requests per second to a model server or chat API, for the whole run (Ray splits it)")
    chat = ap.add_argument_group("a vision-language chat API (--model is then its base URL, e.g. http://host/v1)")
    chat.add_argument("--chat-model", default=None, help="the API's model name; turns the chat client on")
    chat.add_argument("--prompt", default="What is in this image?", help="the question asked about each image")
    chat.add_argument("--candidates", default=None, help="comma-separated answers to score, e.g. cat,dog,fox")
    chat.add_argument("--yes-no", action="store_true", help="score P(yes) for a yes/no question instead")
    chat.add_argument("--samples", type=int, default=None, help="for an API without logprobs: answers per query")
    chat.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    chat.add_argument("--price-in", type=float, default=0.0, help="price per million input tokens")
    chat.add_argument("--price-out", type=float, default=0.0, help="price per million output tokens")
    chat.add_argument("--max-cost", type=float, default=None, help="the most the whole batch may spend")


def usage_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _value(text: str) -> Any:
    """``8`` -> 8, ``0.5`` -> 0.5, ``true`` -> True, anything else stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def share_params(methods: list[str], settings: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``--param`` settings shared out to the methods; an unknown method or parameter is a usage error."""
    from explainers import list_explainers
    from explainers.registry import explainer_class
    known = set(list_explainers())
    for m in methods:
        if m not in known:
            usage_error(f"unknown method {m!r}; choose from {', '.join(sorted(known))}")
    params: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for s in settings:
        key, sep, raw = s.partition("=")
        if not sep or not key:
            usage_error(f"--param {s!r} is not KEY=VALUE")
        method, _, name = key.rpartition(".")
        targets = [method] if method else [m for m in methods
                                           if name in {p.name for p in explainer_class(m).param_specs}]
        if method and method not in params:
            usage_error(f"--param {s!r} names method {method!r}, which is not among --method")
        if not targets:
            usage_error(f"no chosen method has a parameter {name!r}")
        for m in targets:
            params[m][name] = _value(raw)
    return [(m, params[m]) for m in methods]


def chat_options(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.chat_model:
        return None
    candidates = [c.strip() for c in (args.candidates or "").split(",") if c.strip()]
    if bool(candidates) == bool(args.yes_no):
        usage_error("a chat model needs --candidates a,b,... or --yes-no (one of the two)")
    options = {"model": args.chat_model, "prompt": args.prompt, "api_key_env": args.api_key_env or None,
               "price_in": args.price_in, "price_out": args.price_out, "max_cost": args.max_cost,
               "samples": args.samples}
    options.update({"yes_no": True} if args.yes_no else {"candidates": candidates})
    return options


def build_spec(args: argparse.Namespace):
    from runtime.batch import SCORES, BatchSpec
    methods = [m.strip() for arg in args.method for m in arg.split(",") if m.strip()]
    scores = tuple(s.strip() for s in args.score.split(",") if s.strip())
    bad = sorted(set(scores) - set(SCORES))
    if bad:
        usage_error(f"unknown score(s) {bad}; choose from {', '.join(SCORES)}")
    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    return BatchSpec(inputs=list(args.paths), model=args.model, methods=share_params(methods, args.param),
                     out=args.out, target=str(args.target), seed=args.seed, scores=scores, backend=args.backend,
                     threads=args.threads, device=args.device, input_shape=shape, labels_file=args.labels,
                     engine=args.engine or "local", workers=args.workers, ray_address=args.ray_address,
                     chat=chat_options(args), rate_limit=args.rate_limit)


def _run(spec, args: argparse.Namespace) -> tuple[Any, Any]:
    from models import ModelLoadError
    from runtime.batch_inputs import ManifestError
    from runtime.batch_run import run_batch
    if args.retry_failed:
        _forget_failed(Path(spec.out))
    reporter = Reporter(quiet=args.quiet, as_json=args.json)
    try:
        table, progress = run_batch(spec, reporter.row, on_plan=reporter.plan)
    except (ManifestError, ModelLoadError, ValueError, TypeError) as e:
        usage_error(str(e))
    reporter.finish(progress, table, Path(spec.out))
    return table, progress


def _forget_failed(out: Path) -> None:
    for p in (out / "rows").glob("*.json") if (out / "rows").is_dir() else ():
        if json.loads(p.read_text()).get("status") != "done":
            p.unlink()


def explain(args: argparse.Namespace) -> int:
    table, progress = _run(build_spec(args), args)
    return 1 if len(table) and (table["status"] != "done").any() else 0


def rerun(args: argparse.Namespace) -> int:
    """The recorded spec into a new folder (``--engine`` may change it), then its maps against the record's."""
    import pandas as pd
    from runtime.batch import BatchSpec
    from runtime.batch_run import compare_maps
    record_path = Path(args.record)
    try:
        record = json.loads(record_path.read_text())
        spec = BatchSpec.from_json(record["spec"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {record_path} is not a run record ({e})", file=sys.stderr)
        return 2
    spec.out = args.out
    if args.engine:
        spec.engine, spec.workers, spec.ray_address = args.engine, args.workers, args.ray_address
    table, _ = _run(spec, args)
    old = pd.read_parquet(record_path.parent / "results.parquet")
    same = compare_maps(old, record_path.parent, table, Path(spec.out))     # map paths are relative to the record
    if not args.quiet:
        print(json.dumps({"rerun_against_record": same}) if args.json else
              f"{same['equal']} of {same['compared']} maps equal the record's bitwise; largest difference "
              f"{same['max_abs_diff']:.3g}", file=sys.stdout if args.json else sys.stderr)
    return 1 if len(table) and (table["status"] != "done").any() else 0


def print_methods() -> int:
    from explainers import list_explainers
    from explainers.registry import explainer_class
    for name in list_explainers():
        cls = explainer_class(name)
        params = ", ".join(f"{p.name}={p.default_for('cpu')!r}" for p in cls.param_specs)
        print(f"{name:22s} {cls.title}\n{'':22s} {params}")
    return 0
