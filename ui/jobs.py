"""Start, poll and stop engine jobs from a page (reused by Explore, Compare and Audio).

``st.session_state`` holds only job ids (never tensors); the engine's worker threads do the work, so one
session's run never blocks another's page. ``live_view`` draws the latest snapshot in an
``st.fragment(run_every=...)`` and stops polling when the job is done (a full rerun registers the fragment
again with ``run_every=None``, the pattern of Streamlit's start-and-stop-fragment-auto-reruns tutorial).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import streamlit as st
import torch

from explainers.base import STOP_WINDOW
from explainers.registry import explainer_class
from runtime.engine import Job, JobSnapshot
from runtime.estimate import expected_seconds, fmt_seconds, query_cost
from models import BlackBox
from ui.plots import convergence_figure, metric_names, metric_specs, metrics_figure
from ui.state import get_engine

POLL_S = float(os.environ.get("SALIENCY_POLL_S", 0.5))  # seconds between live redraws


def _slot_key(slot: str) -> str:
    return f"job:{slot}"


def start_job(slot: str, bb: BlackBox, x: torch.Tensor, method: str, params: dict[str, Any], *,
              target: int | None, seed: int, input_id: str | None, context: Any = None,
              stop_tol: float | None = None, stop_window: int = STOP_WINDOW) -> Job:
    """Submit to the shared engine (a cached result comes back finished at once). Bad params raise here."""
    job = get_engine().submit(bb, x, method, params, target=target, seed=seed, input_id=input_id,
                              stop_tol=stop_tol, stop_window=stop_window)
    st.session_state[_slot_key(slot)] = {"id": job.id, "context": context,
                                         "request": request(method, params, target, seed, stop_tol)}
    return job


def request(method: str, params: dict[str, Any], target: int | None, seed: int,
            stop_tol: float | None) -> dict[str, Any]:
    """What a run was asked for, as the page's widgets said it (to tell when they have changed since)."""
    return {"method": method, **{f"parameter {k}": v for k, v in params.items()}, "class": target, "seed": seed,
            "stop when converged": stop_tol}


def changed_since_run(slot: str, now: dict[str, Any]) -> list[str]:
    """The settings that differ between the slot's last run and ``now`` (``request(...)``), as "name: old -> new"
    (empty when the shown map belongs to the current settings, or there is no run)."""
    entry = st.session_state.get(_slot_key(slot)) or {}
    then = entry.get("request")
    if then is None:
        return []
    return [f"{k}: {then.get(k)} → {now.get(k)}" for k in dict.fromkeys([*then, *now]) if then.get(k) != now.get(k)]


def current_job(slot: str, context: Any = None) -> Job | None:
    """The slot's job, if it was started for this ``context`` (input, model ...); else None."""
    entry = st.session_state.get(_slot_key(slot))
    if not entry or entry.get("context") != context:
        return None
    return get_engine().get(entry["id"])


def stop_job(slot: str) -> None:
    entry = st.session_state.get(_slot_key(slot))
    job = get_engine().get(entry["id"]) if entry else None
    if job is not None:
        job.cancel()


def clear_job(slot: str) -> None:
    st.session_state.pop(_slot_key(slot), None)


def plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def progress_text(snap: JobSnapshot) -> str:
    if snap.converged:
        text = f"converged at {snap.queries:,} of {snap.budget:,} queries · elapsed {fmt_seconds(snap.elapsed)}"
    else:
        text = f"{snap.queries:,} / {snap.budget:,} queries · elapsed {fmt_seconds(snap.elapsed)}"
    phase = snap.extras.get("phase") if not snap.finished else None
    if phase in ("warm-up", "training"):   # DAX: every query is made, the networks are learning
        what = "warming up the student" if phase == "warm-up" else "training epoch"
        text += f" · {what} {snap.extras.get('epoch')} of {snap.extras.get('epochs')}"
    if not snap.finished:   # with a convergence stop, the time to the end of the budget: at most this
        text += f" · ETA {'≤ ' if snap.stop_tol else ''}{fmt_seconds(snap.eta)}"
    return text + f" · {snap.status}"


def draw_progress(snap: JobSnapshot) -> None:
    st.progress(min(1.0, max(0.0, snap.progress)), text=progress_text(snap))


def live_view(job: Job, draw: Callable[[JobSnapshot], None], interval: float = POLL_S) -> None:
    """Draw ``job``'s latest snapshot now and every ``interval`` s while it runs; stop polling when finished."""
    polling = not job.snapshot().finished

    @st.fragment(run_every=interval if polling else None)
    def _view() -> None:
        snap = job.snapshot()
        draw(snap)
        if polling and snap.finished:
            st.rerun()  # whole app: the fragment comes back without run_every, downloads appear

    _view()


def draw_history(snap: JobSnapshot) -> None:
    """The convergence curve and, beside it, the method's own diagnostics, once there are two estimates.

    While the run streams, one line with the latest values instead: two Plotly charts rebuilt and redrawn at
    every tick cost the browser more than the map (issue 12); the charts come when the run is over."""
    if len(snap.history) <= 1:
        return
    if not snap.finished:
        st.caption(history_line(snap))
        return
    names = metric_names(snap.history)
    cols = st.columns(2 if names else 1)
    cols[0].plotly_chart(convergence_figure(snap.history), width="stretch")
    if names:
        cols[1].plotly_chart(metrics_figure(snap.history, names, method=snap.method), width="stretch")


def history_line(snap: JobSnapshot) -> str:
    """The latest relative change between estimates and the method's own diagnostics, in one line."""
    last = snap.history[-1]
    parts = []
    rel = last.get("rel_change")
    if isinstance(rel, float) and rel == rel:
        parts.append(f"change since the last estimate {rel:.1%}")
    specs = metric_specs(snap.method)
    for name in metric_names(snap.history):
        value = last.get(name)
        if isinstance(value, (int, float)) and value == value:
            spec = specs.get(name)
            label, scale, unit = (spec.label, spec.scale, spec.unit) if spec else (name, 1.0, "")
            parts.append(f"{label} {value * scale:.3g}{' ' + unit if unit else ''}")
    return "Converging: " + " · ".join(parts) + " (charts when the run ends)." if parts else ""


def budget_line(bb: BlackBox, method: str, params: dict[str, Any], seed: int, shape) -> bool:
    """Show the query budget and the expected time (or, for a remote model, what the run sends and costs);
    show a bad parameter as an error instead. Returns whether the parameters are valid."""
    from explainers import get_explainer
    try:
        budget = get_explainer(method, seed=seed, **params).query_budget(tuple(shape))
    except (ValueError, TypeError) as e:
        st.error(str(e))
        return False
    if bb.meta.get("remote"):  # a remote model's time is the endpoint's; its cost is what matters
        from ui.remote import run_cost_text
        st.markdown(f"**Query budget:** {budget:,} queries. {run_cost_text(budget)}")
        return True
    cost = query_cost(bb)
    seconds = expected_seconds(bb, method, params, shape, seed)
    expected = ""
    if seconds is not None:
        extra = seconds - budget * cost
        expected = (f" · expected ≈ {fmt_seconds(seconds)} on {bb.device.type.upper()} ({cost * 1e3:.1f} ms per "
                    f"query{f', plus {fmt_seconds(extra)} of training' if extra >= 0.05 else ''}, measured here)")
    st.markdown(f"**Query budget:** {plural(budget, 'query', 'queries')}{expected}")
    return True


def stop_control(key_prefix: str, method: str) -> dict[str, Any]:
    """The optional "Stop when converged" control under the budget line: ``stop_tol`` and ``stop_window`` for
    ``run_controls`` (``stop_tol`` None when off, or when the method's partial maps are not estimates)."""
    can = explainer_class(method).early_stop
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    on = c1.checkbox("Stop when converged", key=f"{key_prefix}stop_on", disabled=not can,
                     help="Every 1/20 of the budget the map is compared with the last check; the run stops once "
                          f"{STOP_WINDOW} changes in a row are below the tolerance. The budget is then the most it "
                          "spends." if can else "This method's partial maps are not estimates: it runs to the end.")
    tol = c2.number_input("Tolerance (%)", 0.01, 50.0, 1.0, 0.1, format="%.2f", key=f"{key_prefix}stop_tol",
                          disabled=not (on and can),
                          help="Relative change of the normalised map between two checks, in percent.")
    return {"stop_tol": float(tol) / 100 if on and can else None, "stop_window": STOP_WINDOW}


def run_controls(slot: str, key_prefix: str, bb: BlackBox, x: torch.Tensor, method: str, params: dict[str, Any], *,
                 target: int, seed: int, input_id: str, context: Any, valid: bool = True,
                 stop_tol: float | None = None, stop_window: int = STOP_WINDOW) -> Job | None:
    """Run and Stop buttons around the slot's job; returns the job for this context (None before a run)."""
    job = current_job(slot, context)
    running = job is not None and not job.snapshot().finished
    b1, b2 = st.columns(2)
    if b1.button("▶ Run", type="primary", disabled=not valid or running, key=f"{key_prefix}run", width="stretch"):
        try:
            start_job(slot, bb, x, method, params, target=int(target), seed=seed, input_id=input_id,
                      context=context, stop_tol=stop_tol, stop_window=stop_window)
            st.rerun()  # redraw the page as running (Stop enabled, polling on)
        except (ValueError, TypeError) as e:
            st.error(str(e))
    if b2.button("■ Stop", disabled=not running, key=f"{key_prefix}stop", width="stretch"):
        stop_job(slot)
    return job
