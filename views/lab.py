"""Convergence lab (issue 4): how fast query-only gradient estimators approach the true gradient.

Thin page. (a) LR (plain, blockwise), GEEX and iGEEX on a real model: cosine with the autograd gradient
against queries, a min-max band over seeds, computed in a background thread (runtime.lab_run.LabRun) and
drawn live by a fragment. (b) A toy 2-D function with its true gradient and the LR estimate's arrows.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import streamlit as st  # noqa: E402
from PIL import Image  # noqa: E402

from evaluation.lab import (EXTENT, gradient_methods, grid, lr_toy_gradient, mean_cosine, toy_f,  # noqa: E402
                             toy_grad)
from runtime.estimate import query_cost  # noqa: E402
from runtime.lab_run import LabRun  # noqa: E402
from runtime.estimate import fmt_seconds  # noqa: E402
from ui.jobs import plural  # noqa: E402
from ui.state import current_device, get_model  # noqa: E402

P = "lab."
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.png"))
# The lab opens on the bundled ImageNet model explaining its top class of the cat photo, with a small sigma (the
# local gradient, which autograd gives; docs/measurements.md: the default sigmas of the methods estimate a smoothed
# gradient nearly orthogonal to it) and a budget that runs in about a minute on a CPU. tiny_cnn (32x32, labels
# "class 0" ...) stays for a fast look.
MODELS = {"efficientnet_lite0": "efficientnet_lite0", "tiny_cnn (fast, 32x32 test network)": "tiny_cnn"}
SIGMAS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]
DEFAULT_SIGMA, DEFAULT_BUDGET, DEFAULT_SEEDS = 0.01, 500, 2
# display name -> registered method and the parameters that make it that variant; any other registered method
# that declares estimates_gradient is offered under its own name
PRESETS = {
    "LR plain": {"method": "lr"},
    "LR blockwise": {"method": "lr", "block_size": 8},
    "GEEX": {"method": "geex"},
    "iGEEX": {"method": "igeex"},
}
COLORS = {"LR plain": "#1f77b4", "LR blockwise": "#2ca02c", "GEEX": "#d62728", "iGEEX": "#9467bd"}


def lab_methods() -> dict[str, dict]:
    """The variants the lab offers: the presets of registered gradient estimators, then the other estimators."""
    registered = gradient_methods()
    out = {label: spec for label, spec in PRESETS.items() if spec["method"] in registered}
    covered = {spec["method"] for spec in out.values()}
    out.update({name: {"method": name} for name in registered if name not in covered})
    return out


def band_figure(bands: dict, qgrid: np.ndarray, title: str, ytitle: str, dims: int | None = None) -> go.Figure:
    """Mean and min-max band per method; with ``dims``, the scale line sqrt(n / D): the cosine of an unbiased
    estimate from n random directions in D dimensions (docs/measurements.md, gradient cosine)."""
    fig = go.Figure()
    for name, (mean, lo, hi) in bands.items():
        c = COLORS.get(name, "#555")
        fig.add_trace(go.Scatter(x=np.r_[qgrid, qgrid[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", line_width=0,
                                 fillcolor=c, opacity=0.2, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=qgrid, y=mean, name=name, line_color=c, mode="lines"))
    if dims:
        fig.add_trace(go.Scatter(x=qgrid, y=np.sqrt(np.asarray(qgrid, float) / dims), name="√(n / D), for scale",
                                 line=dict(color="#888", dash="dot"), mode="lines"))
    fig.update_layout(title=title, xaxis_title="queries", yaxis_title=ytitle, height=380,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    return fig


def draw_run(run: LabRun, dims: int | None = None) -> None:
    """Progress or the "Done" line, the cosine bands, the last cosines and iGEEX's completeness gap."""
    top = max((p[0] for runs in run.points.values() for pts in runs.values() for p in pts), default=0)
    if run.error and run.error != "stopped":
        st.error(f"The run failed: {run.error}")
    if not run.done:
        st.progress(run.progress(), text=f"Running {run.current or '…'}: {run.progress():.0%}")
    else:
        st.caption(f"Done in {run.elapsed:.1f} s" + (" (stopped)" if run.error == "stopped" else "") + ".")
    if top == 0:
        return
    qgrid = np.unique(np.linspace(1, top, 120).astype(int))
    bands = run.bands(qgrid)
    st.plotly_chart(band_figure(bands, qgrid, "Cosine with the true gradient (mean, min-max band over seeds)",
                                "cosine", dims=dims), width="stretch", key=f"{P}cos_chart")
    last = {n: b[0][-1] for n, b in bands.items()}
    st.dataframe({"method": list(last), "mean cosine at the last checkpoint": [round(float(v), 3) for v in last.values()]},
                 hide_index=True, key=f"{P}cos_table")
    gaps = {n: b for n, b in run.bands(qgrid, which=2).items() if np.isfinite(b[0]).any()}
    if gaps:
        st.plotly_chart(band_figure(gaps, qgrid, "iGEEX completeness gap |sum A - (f(x) - f(x0))| / |f(x) - f(x0)|",
                                    "completeness gap"), width="stretch", key=f"{P}gap_chart")


def load_lab_model(model_label: str, score_mode: str):
    return get_model(MODELS[model_label], str(current_device())).view(score_mode=score_mode)


def expected_text(model_label: str, n_methods: int, n_seeds: int, budget: int) -> str:
    """What Run will spend: every method once per seed, plus one query for the top class."""
    total = n_methods * n_seeds * budget + 1
    text = (f"Run spends about {plural(total, 'query', 'queries')} "
            f"({n_methods} × {n_seeds} × {budget:,} + 1 for the top class)")
    try:
        cost = query_cost(load_lab_model(model_label, "logit"))
    except Exception:   # the Run button reports a model that does not load
        cost = float("nan")
    if cost == cost:
        text += f": expected ≈ {fmt_seconds(total * cost)} here ({cost * 1e3:.1f} ms per query, measured)"
    return text + "."


def live(run: LabRun, dims: int | None = None) -> None:
    """The run so far; when it finishes while this fragment polls, the whole page reruns once, so the Stop
    button (drawn outside the fragment) goes and Run comes back."""
    polling = not run.done

    @st.fragment(run_every=1.0 if polling else None)
    def _live():
        draw_run(run, dims)
        if polling and run.done:
            st.rerun()

    _live()


st.title("Convergence lab")
st.caption("Gradient estimators that only query the model (LR, GEEX, iGEEX) against the true gradient that "
           "autograd computes from the open model: how many queries until they agree?")

tab_model, tab_toy = st.tabs(["Real model", "Toy 2-D function"])

with tab_model:
    offered = lab_methods()
    available = list(offered)
    names = [p.stem for p in EXAMPLES]
    c1, c2, c3 = st.columns(3)
    image_name = c1.selectbox("Example image", names, index=names.index("cat") if "cat" in names else 0,
                              key=f"{P}image")
    model_label = c2.selectbox("Model", list(MODELS), key=f"{P}model",
                               help="EfficientNet-Lite0 (224x224, ImageNet) explains its top class: about a minute "
                                    "at the defaults on a CPU. tiny_cnn is a small 32x32 test network with classes "
                                    "named class 0 ... class 9: runs take seconds.")
    score_mode = c3.selectbox("Score", ["logit", "logprob", "prob"], key=f"{P}score_mode")
    c4, c5, c6 = st.columns(3)
    methods = c4.multiselect("Methods", available, default=available, key=f"{P}methods")
    budget = int(c5.number_input("Queries per run", 20, 20_000, DEFAULT_BUDGET, step=100, key=f"{P}budget"))
    n_seeds = int(c6.number_input("Seeds", 1, 5, DEFAULT_SEEDS, key=f"{P}seeds"))
    sigma = st.select_slider("Noise sigma (all methods)", SIGMAS, value=DEFAULT_SIGMA, key=f"{P}sigma",
                             help="Small sigma: the local gradient (what autograd gives), more variance; large "
                                  "sigma: a smoothed gradient, biased (on EfficientNet-Lite0 nearly orthogonal to "
                                  "the local one).")
    if methods:
        st.caption(expected_text(model_label, len(methods), n_seeds, budget))
    run: LabRun | None = st.session_state.get(f"{P}run")
    b1, b2 = st.columns(2)
    if b1.button("Run", type="primary", key=f"{P}go", disabled=not methods or (run is not None and not run.done)):
        try:
            bb = load_lab_model(model_label, score_mode)
            x = bb.preprocess(Image.open(ROOT / "assets" / "examples" / f"{image_name}.png").convert("RGB"))
            target = int(bb(x.unsqueeze(0))[0].argmax())
            spec = {m: {**offered[m], "sigma": sigma} for m in methods}
            run = st.session_state[f"{P}run"] = LabRun(bb, x, target, spec, list(range(n_seeds)), budget)
            st.session_state[f"{P}dims"] = int(x.numel())
            st.session_state[f"{P}target"] = f"{bb.labels[target]} ({target}) of the {image_name} photo, {bb.name}"
        except Exception as e:
            st.error(f"Could not start the run ({type(e).__name__}: {e}).")
    if run is not None and not run.done and b2.button("Stop", key=f"{P}stop"):
        run.stop()
    if run is None:
        st.info("Press Run: every method is run once per seed on the model's top class for the image; the curves "
                "grow as queries are spent.")
    else:
        st.caption(f"Explaining the top class: {st.session_state.get(f'{P}target', '?')}.")
        live(run, st.session_state.get(f"{P}dims"))

with tab_toy:
    st.markdown("f(p) is a sum of three Gaussian bumps. Black arrows: its true gradient. Red arrows: the LR "
                "estimate from `samples` antithetic queries with noise N(0, sigma^2 I) at each grid point. "
                "Large sigma: the estimate sees a blurred f (bias); few samples: noisy arrows (variance).")
    t1, t2, t3 = st.columns(3)
    tsigma = t1.select_slider("sigma", [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2], value=0.2, key=f"{P}toy_sigma")
    tn = t2.select_slider("samples per point", [2, 4, 10, 30, 100, 300, 1000, 3000], value=30, key=f"{P}toy_n")
    tseed = int(t3.number_input("seed", 0, 1000, 0, key=f"{P}toy_seed"))
    pts = grid(13)
    g_true, g_est = toy_grad(pts), lr_toy_gradient(pts, tsigma, tn, seed=tseed)
    cos = mean_cosine(g_est, g_true)
    st.metric("Mean cosine (estimate vs true gradient)", f"{cos:.3f}")
    t = np.linspace(-EXTENT, EXTENT, 120)
    xx, yy = np.meshgrid(t, t)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    cs = ax.contourf(xx, yy, toy_f(np.stack([xx, yy], -1)), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="f(p)")
    scale = np.percentile(np.linalg.norm(g_true, axis=-1), 90) * 20
    ax.quiver(pts[:, 0], pts[:, 1], g_true[:, 0], g_true[:, 1], color="black", scale=scale, width=0.004,
              label="true gradient")
    ax.quiver(pts[:, 0], pts[:, 1], g_est[:, 0], g_est[:, 1], color="red", scale=scale, width=0.004,
              label=f"LR estimate (sigma={tsigma}, n={tn})")
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    st.pyplot(fig, width="content")
    plt.close(fig)
