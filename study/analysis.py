"""From raw response rows (Repository.response_rows) to the results tables (pure python + study.stats)."""
from __future__ import annotations

import csv
import io

import numpy as np

from study import stats


def analyse(rows: list[dict], *, exclude_failed: bool = True, max_ok: int = 2) -> dict:
    """Attention-check flags, per-method mean rating + 95 % CI, win matrix, Bradley-Terry, Krippendorff alpha."""
    failed = stats.attention_failures(((r["participant"], r["rating"]) for r in rows
                                       if r["attention_check"] and r["rating"] is not None), max_ok=max_ok)
    kept = [r for r in rows if not (exclude_failed and r["participant"] in failed)]
    likert = [r for r in kept if r["kind"] == "likert" and not r["attention_check"]]
    methods = sorted({r["method_a"] for r in likert} | {m for r in kept if r["kind"] == "pairwise"
                                                       for m in (r["method_a"], r["method_b"])})
    ratings = []
    for m in methods:
        mean, lo, hi, n = stats.mean_ci([r["rating"] for r in likert if r["method_a"] == m])
        ratings.append({"method": m, "mean": mean, "ci_low": lo, "ci_high": hi, "n": n})
    pairs = [(r["preferred_method"], r["method_b"] if r["choice"] == 0 else r["method_a"])
             for r in kept if r["kind"] == "pairwise"]
    # only methods that were compared: one never compared has no Bradley-Terry strength
    items, wins = stats.win_matrix(pairs) if pairs else ([], np.zeros((0, 0)))
    bt = stats.bradley_terry(wins) if pairs else np.zeros(0)
    raters = sorted({r["participant"] for r in likert})
    units = sorted({r["trial"] for r in likert})
    data = np.full((len(raters), len(units)), np.nan)
    ri, ui = {p: i for i, p in enumerate(raters)}, {t: j for j, t in enumerate(units)}
    for r in likert:
        data[ri[r["participant"]], ui[r["trial"]]] = r["rating"]
    alpha = stats.krippendorff_alpha(data, "ordinal") if len(raters) >= 2 else float("nan")
    return {"failed": failed, "ratings": ratings, "items": items, "wins": wins, "bradley_terry": bt,
            "alpha": alpha, "n_raters": len(raters), "n_units": len(units), "n_rows": len(kept)}


def _cell(v):
    # a comment starting with = + - @ would run as a formula in a spreadsheet (CSV injection)
    return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def to_csv(rows: list[dict]) -> bytes:
    """All raw rows as CSV (UTF-8), text cells made formula-safe."""
    rows = [{k: _cell(v) for k, v in r.items()} for r in rows]
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue().encode()
