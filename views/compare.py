"""Compare: 2 to 6 methods (or settings of one method) on one input and one model, side by side and scored.

Thin page: the runs are engine jobs, the scores come from ``evaluation.metrics``, the table and the ZIP from
``evaluation.report`` (the same code ``bench/compare_table.py`` prints), the figures from ``ui.compare_plots``.
The flow is at the bottom: setup (input, model, class, methods, ground truth), run, live panels, then the
scores table, the plots and the downloads once every run has finished.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from explainers import explainer_class, list_explainers
from models import explained_view
from evaluation import metrics
from evaluation.report import CONTROLS, Comparison, add_controls, export_zip, run_from_snapshot, unique_labels
from runtime.estimate import expected_seconds, query_cost
from ui.compare_plots import correlation_figure, curves_figure, grid_figure
from ui.inputs import image_input
from runtime.estimate import fmt_seconds
from ui.jobs import POLL_S, plural, progress_text
from ui.model_picker import pick_model
from ui.params import param_widgets
from ui.state import get_engine

P = "compare."
DEFAULT_METHODS = ("lr", "sobol", "rise", "occlusion", "decam", "dax")
GT_MODES = ("None", "Box", "Mask image")


# ------------------------------------------------------------------------------------------------ setup
def input_and_model():
    """The input, the model and the preprocessed tensor (the page stops until both are chosen and usable)."""
    with st.expander("Input and model", expanded=P + "runs" not in st.session_state):
        left, right = st.columns([3, 2])
        with left:
            inp = image_input(key_prefix=P)
        with right:
            bb = pick_model(key_prefix=P)
    if inp is None or bb is None:
        st.stop()
    if bb.modality != "image":
        st.error(f"{bb.name} is an audio model; the Compare page explains image models.")
        st.stop()
    try:
        x = bb.preprocess(inp.image)
    except Exception as e:  # a model with odd preprocessing: say so, keep the app alive
        st.error(f"{bb.name} could not preprocess {inp.name}: {type(e).__name__}: {e}")
        st.stop()
    return inp, bb, x


def choose_target(inp, bb, x) -> int:
    """The class to explain, among the model's top 5 (computed once per input and model)."""
    top_key = (inp.input_id, bb.id)
    if st.session_state.get(P + "top", (None,))[0] != top_key:
        try:
            st.session_state[P + "top"] = (top_key, bb.predict(x, 5))
        except Exception as e:
            st.error(f"{bb.name} failed on this input: {type(e).__name__}: {e}")
            st.stop()
    top5 = st.session_state[P + "top"][1]
    return st.selectbox("Class to explain", [i for i, _, _ in top5], key=P + "target",
                        format_func=lambda i: next(f"{lab} ({i}) · p = {p:.3f}" for j, lab, p in top5 if j == i))


def method_panel(i: int, methods: list[str], default: str, bb, x) -> tuple[str, str, dict, int, int | None]:
    """One panel's (label, method, params, seed, budget); budget None when the settings are invalid."""
    method = st.selectbox(f"Panel {i + 1}", methods, index=methods.index(default), key=f"{P}{i}.method",
                          format_func=lambda m: explainer_class(m).title or m)
    cls = explainer_class(method)
    seed = int(st.number_input("seed", 0, 2**31 - 1, 0, key=f"{P}{i}.seed"))
    with st.expander("parameters"):
        params = param_widgets(cls, bb.device, key_prefix=f"{P}{i}.")
    base = cls.defaults(bb.device)
    diff = ", ".join(f"{k}={v}" for k, v in params.items() if v != base.get(k))
    label = method + (f" ({diff})" if diff else "") + (f" seed {seed}" if seed else "")
    try:
        budget = cls(seed=seed, **params).query_budget(tuple(x.shape))
        st.caption(f"{plural(budget, 'query', 'queries')} · {cls.paper}")
    except Exception as e:  # the widgets keep values in range; cross-parameter checks can still fail
        st.error(f"{method}: {e}")
        budget = None
    return label, method, params, seed, budget


def method_panels(bb, x) -> list[tuple[str, str, dict, int, int | None]]:
    methods = list_explainers(modality="image", white_box=False) + (
        list_explainers(modality="image", white_box=True) if bb.is_white_box else [])
    defaults = [m for m in DEFAULT_METHODS if m in methods] + [m for m in methods if m not in DEFAULT_METHODS]
    st.subheader("Methods")
    n_runs = int(st.number_input("Panels", 2, 6, min(4, max(2, len(defaults))), key=P + "n",
                                 help="2 to 6 runs. Pick the same method in several panels to compare its settings."))
    cols = st.columns(min(n_runs, 3))
    specs = []
    for i in range(n_runs):
        with cols[i % len(cols)].container(border=True):
            specs.append(method_panel(i, methods, defaults[i % len(defaults)], bb, x))
    return specs


def mask_from_upload(w: int, h: int) -> np.ndarray | None:
    up = st.file_uploader("Mask (PNG; white = object), resized to the model input", type=["png", "jpg", "bmp"],
                          key=P + "mask_file")
    if up is None:
        return None
    try:
        m = Image.open(io.BytesIO(up.getvalue())).convert("L").resize((w, h), Image.Resampling.NEAREST)
        mask = np.asarray(m) > 127
        if not mask.any():
            st.error(f"{up.name}: the mask has no white pixel (object = white).")
            return None
        return mask
    except Exception as e:
        st.error(f"{up.name} could not be read as a mask ({type(e).__name__}: {e}).")
        return None


def ground_truth(h: int, w: int) -> tuple[np.ndarray | None, tuple[int, int, int, int] | None]:
    """The optional object location: (mask, box drawn on the panels)."""
    st.subheader("Ground truth (optional)")
    gt_mode = st.radio("Object location, for the pointing game and IoU", GT_MODES, horizontal=True, key=P + "gt")
    if gt_mode == "Mask image":
        return mask_from_upload(w, h), None
    if gt_mode != "Box":
        return None, None
    c = st.columns(4)
    box = (int(c[0].number_input("left x", 0, w - 1, w // 4, key=P + "x0")),
           int(c[1].number_input("top y", 0, h - 1, h // 4, key=P + "y0")),
           int(c[2].number_input("right x", 1, w, 3 * w // 4, key=P + "x1")),
           int(c[3].number_input("bottom y", 1, h, 3 * h // 4, key=P + "y1")))
    st.caption(f"Pixels of the model's {w} x {h} input; the box is drawn dashed on every panel.")
    try:
        return metrics.box_mask((h, w), box), box
    except ValueError as e:
        st.error(str(e))
        return None, None


def scoring_options() -> tuple[bool, bool]:
    """(µ-fidelity on, control rows on)."""
    extra = metrics.metric_query_count(mu=True) - metrics.metric_query_count(mu=False)
    with_mu = st.checkbox(f"µ-fidelity ({plural(extra, 'extra query', 'extra queries')} per map)", value=True,
                          key=P + "mu")
    with_controls = st.checkbox("Add control rows (random pixels, random blocks, centre Gaussian)", value=True,
                                key=P + "controls", help="Maps made without the model, scored like the runs "
                                "(their metric queries only): the reference a score has to beat.")
    return with_mu, with_controls


# ------------------------------------------------------------------------------------------------ run
def _expected(bb, method: str, params: dict, shape: tuple, seed: int) -> float | None:
    try:
        return expected_seconds(bb, method, params, shape, seed)
    except Exception:   # an estimate that fails (a method's timing of its own work) costs the line, not the page
        return None


def run_plan(bb, x, specs, with_mu: bool, with_controls: bool) -> dict:
    """What "Run all" will spend: the explanations' queries, the scores' queries (every run's map and every
    control map, each scored once by ``metrics.evaluate``) and the expected seconds of each (None where unknown:
    a remote model, or a panel with invalid settings)."""
    valid = [s for s in specs if s[4] is not None]
    n_maps = len(specs) + (len(CONTROLS) if with_controls else 0)
    per_map = metrics.metric_query_count(mu=with_mu)
    run_bb = explained_view(bb)
    runs_s = [_expected(run_bb, method, params, tuple(x.shape), seed) for _, method, params, seed, _ in valid]
    cost = query_cost(bb)
    plan = {"explanation_queries": sum(s[4] for s in valid), "maps": n_maps, "queries_per_map": per_map,
            "metric_queries": n_maps * per_map, "runs_s": None, "scores_s": None, "seconds_per_query": cost}
    plan["total_queries"] = plan["explanation_queries"] + plan["metric_queries"]
    if valid and all(t is not None for t in runs_s):
        plan["runs_s"] = float(sum(runs_s))
    if cost == cost:   # not NaN: a local model
        plan["scores_s"] = plan["metric_queries"] * cost
    return plan


def plan_text(plan: dict, bb) -> str:
    """The line above "Run all": total queries, and the expected time when this machine can tell."""
    text = (f"**Run all spends {plural(plan['total_queries'], 'query', 'queries')}**: "
            f"{plan['explanation_queries']:,} for the explanations + {plan['metric_queries']:,} for the scores "
            f"({plural(plan['maps'], 'map', 'maps')} × {plan['queries_per_map']:,}).")
    if plan["runs_s"] is not None and plan["scores_s"] is not None:
        text += (f" Expected ≈ **{fmt_seconds(plan['runs_s'] + plan['scores_s'])}** here: runs "
                 f"{fmt_seconds(plan['runs_s'])}, scoring {fmt_seconds(plan['scores_s'])} "
                 f"({plan['seconds_per_query'] * 1e3:.1f} ms per query on {bb.device.type.upper()}, measured "
                 "here; results already in the cache come back at once).")
    elif bb.meta.get("remote"):
        text += " The expected time is the endpoint's: it is not measured here."
    return text


def start_or_stop(bb, x, inp, target: int, specs, context: tuple, plan: dict) -> dict:
    """The Run all / Stop all buttons; the page's runs for this context (the page stops when there are none)."""
    state = st.session_state.get(P + "runs")
    if state is not None and state["context"] != context:
        state = None  # another input, model or class: the old runs do not apply
    st.markdown(plan_text(plan, bb))
    b1, b2, _ = st.columns([1, 1, 4])
    if b1.button("Run all", type="primary", key=P + "run", disabled=any(s[4] is None for s in specs)):
        engine, runs = get_engine(), []
        try:
            for label, (_, method, params, seed, _) in zip(unique_labels([s[0] for s in specs]), specs):
                job = engine.submit(explained_view(bb), x, method, params, target=int(target), seed=seed, input_id=inp.input_id)
                runs.append((label, job.id))
            state = st.session_state[P + "runs"] = {"context": context, "runs": runs}
        except Exception as e:
            st.error(f"Could not start: {e}")
    if state is not None and b2.button("Stop all", key=P + "stop"):
        for _, jid in state["runs"]:
            job = get_engine().get(jid)
            if job is not None:
                job.cancel()
    if state is None:
        st.info("Choose the methods and press **Run all**.")
        st.stop()
    return state


def live_jobs(state: dict) -> list:
    jobs = [(label, get_engine().get(jid)) for label, jid in state["runs"]]
    jobs = [(label, j) for label, j in jobs if j is not None]
    if not jobs:
        st.warning("These runs are gone (the server restarted); press **Run all** again.")
        st.stop()
    return jobs


def live_panels(jobs: list, background: np.ndarray, box, polling: bool) -> None:
    """Progress and the maps so far (a fragment that polls while a run is going)."""
    snaps = [(label, j.snapshot()) for label, j in jobs]
    cols = st.columns(min(len(snaps), 3))
    for i, (label, s) in enumerate(snaps):
        with cols[i % len(cols)]:
            st.progress(min(1.0, max(0.0, s.progress)), text=f"**{label}**: {progress_text(s)}")
            if s.error:
                st.error(f"{label}: {s.error}")
    normalise = st.toggle("Normalise each map (off: one shared scale of raw values)", value=True, key=P + "norm")
    st.plotly_chart(grid_figure(background, {label: s.saliency for label, s in snaps}, normalise=normalise,
                                box=box), width="stretch", config={"displaylogo": False})
    if polling and all(s.finished for _, s in snaps):
        st.rerun()  # whole app: scores, table and export appear, and the fragment stops polling


# ------------------------------------------------------------------------------------------------ scores
def score_all(bb, x, inp, target: int, jobs: list, background, mask, with_mu: bool, with_controls: bool,
              context: tuple) -> Comparison:
    """The finished runs and the control rows as one :class:`Comparison`, each map scored once per setting."""
    mask_sha = hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16] if mask is not None else None
    cache = st.session_state.setdefault(P + "scores", {})

    def scores_of(key: tuple, label: str, saliency, seed: int) -> dict | None:
        """The map's scores, computed once per key (None, with an error shown, when scoring failed)."""
        if key not in cache:
            with st.spinner(f"Scoring {label}…"):
                try:
                    cache[key] = metrics.evaluate(bb, x, int(target), saliency, mask=mask, mu=with_mu, seed=seed)
                except Exception as e:
                    st.error(f"{label}: the scores failed ({type(e).__name__}: {e})")
                    cache[key] = None
        return cache[key]

    comp = Comparison.of(bb, x, int(target), input_name=inp.name, input_sha256=inp.input_id, mask=mask,
                         background=background)
    for label, job in jobs:
        snap = job.snapshot()
        if snap.saliency is None:
            continue
        key = (snap.key, snap.status, snap.queries, mask_sha, with_mu)
        comp.runs.append(run_from_snapshot(label, snap, scores_of(key, label, snap.saliency, snap.seed)))
    if not comp.runs:
        st.error("No run produced a map.")
        st.stop()
    add_controls(comp, bb, x, CONTROLS if with_controls else (), score=lambda run: scores_of(
        ("control", run.params["kind"], context, mask_sha, with_mu), run.label, run.saliency, run.seed))
    return comp


TABLE_CONFIG = {   # short headers and set widths: every column fits the page at 1440 x 900
    "run": st.column_config.TextColumn("run", width=240, help="The method and the settings that differ from "
                                       "its defaults"),
    "queries": st.column_config.NumberColumn("queries", width=75, format="%d",
                                             help="Model queries the explanation spent"),
    "wall_time_s": st.column_config.NumberColumn("time (s)", width=70, format="%.1f",
                                                 help="Wall time of the explanation"),
    "deletion_auc": st.column_config.NumberColumn("deletion ↓", width=85, format="%.3f",
                                                  help="Deletion AUC: lower is better"),
    "insertion_auc": st.column_config.NumberColumn("insertion ↑", width=85, format="%.3f",
                                                   help="Insertion AUC: higher is better"),
    "mu_fidelity": st.column_config.NumberColumn("µ-fidelity ↑", width=90, format="%.3f",
                                                 help="µ-fidelity (Spearman): higher is better"),
    "pointing_game": st.column_config.CheckboxColumn("pointing", width=70,
                                                     help="Pointing game: the map's maximum on the object"),
    "iou": st.column_config.NumberColumn("IoU ↑", width=65, format="%.3f",
                                         help="IoU of the map (≥ 0.2 after min-max) with the object"),
    "metric_queries": st.column_config.NumberColumn("score queries", width=90, format="%d",
                                                    help="Queries the scores spent"),
    "status": st.column_config.TextColumn("status", width=75),
}


def table_columns(df: pd.DataFrame) -> list[str]:
    """The columns worth a place: no empty score column (µ-fidelity off, no ground truth), the status only when
    a run did not finish; ``method`` and ``control`` repeat the run's label ("control: ...") and stay in the
    data and the export only."""
    shown = [c for c in TABLE_CONFIG if c in df.columns and c != "run" and df[c].notna().any()]
    if "status" in shown and (df["status"] == "done").all():
        shown.remove("status")
    return shown


def scores_table(comp: Comparison, target: int, mask) -> None:
    st.subheader("Scores")
    df = pd.DataFrame(comp.table()).set_index("run")
    st.dataframe(df, width="content", column_order=table_columns(df), column_config=TABLE_CONFIG)
    st.caption(f"Click a column header to sort. The methods explain the class's logit; the scores read its "
               f"probability. Deletion / insertion: {metrics.STEPS} steps, zero / blur substrate, "
               f"softmax probability of class {int(target)}, trapezoid AUC (RISE protocol). µ-fidelity: "
               f"{metrics.MU_GRID}x{metrics.MU_GRID} grid, {metrics.MU_SAMPLES} subsets, p = {metrics.MU_P}, "
               f"Spearman. Pointing game: ±{metrics.POINTING_TOLERANCE} px; IoU: normalised map ≥ "
               f"{metrics.IOU_THRESHOLD}."
               + ("" if mask is not None else " Give a ground truth above for the pointing game and IoU."))
    if comp.controls:
        st.caption("**Control rows** are maps that know nothing about the model (random pixels, random 7x7 blocks, "
                   "a centred Gaussian), scored the same way: a method's score means something only by how far it "
                   "beats them. Pixel-wise deletion favours scattered maps (on the bundled cat, random pixels get "
                   "the best deletion AUC of all).")


def score_plots(comp: Comparison) -> None:
    left, right = st.columns(2)
    scored = {r.label: r.scores for r in comp.runs if r.scores}
    if scored:
        left.plotly_chart(curves_figure(scored, controls={r.label for r in comp.controls}), width="stretch")
    corr = comp.correlation()
    if corr is not None:   # the explanations only: controls would add rows of ~0
        right.plotly_chart(correlation_figure([r.label for r in comp.explanations], corr), width="stretch")


def downloads(comp: Comparison) -> None:
    st.download_button("Download everything (ZIP)", data=export_zip(comp), file_name="saliency-comparison.zip",
                       mime="application/zip", on_click="ignore", key=P + "zip",
                       help="Overlay PNGs, raw maps (.npy), metrics.csv, curves.csv, rank_correlation.csv, "
                            "report.json (model, parameters, seeds, versions) and a manifest.")
    total = sum(r.queries for r in comp.runs)
    mq = sum((r.scores or {}).get("metric_queries") or 0 for r in comp.runs)
    n_ctl = len(comp.controls)
    st.caption(f"{len(comp.explanations)} runs" + (f" + {n_ctl} controls" if n_ctl else "") +
               f" · {total:,} explanation queries · {mq:,} metric queries · "
               f"wall time of the slowest run {fmt_seconds(max(r.wall_time_s for r in comp.runs))}")


# ------------------------------------------------------------------------------------------------ the page
def main() -> None:
    st.title("⚖️ Compare methods")
    st.caption("Several black-box methods, or several settings of one, on the same input and model: maps side "
               "by side, faithfulness scores (their queries are counted apart from the explanations'), one ZIP.")
    inp, bb, x = input_and_model()
    h, w = x.shape[-2:]
    target = choose_target(inp, bb, x)
    specs = method_panels(bb, x)
    mask, box = ground_truth(h, w)
    with_mu, with_controls = scoring_options()

    context = (inp.input_id, bb.id, int(target))
    plan = run_plan(bb, x, specs, with_mu, with_controls)
    jobs = live_jobs(start_or_stop(bb, x, inp, target, specs, context, plan))
    background = bb.to_display(x)
    polling = not all(j.snapshot().finished for _, j in jobs)
    st.fragment(live_panels, run_every=POLL_S if polling else None)(jobs, background, box, polling)
    if polling:
        st.caption("Scores, table, curves and export appear when every run has finished.")
        st.stop()

    comp = score_all(bb, x, inp, target, jobs, background, mask, with_mu, with_controls, context)
    scores_table(comp, target, mask)
    score_plots(comp)
    downloads(comp)


main()
