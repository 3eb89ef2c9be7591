"""Study results (admin): mean rating +- 95 % CI, win matrix, Bradley-Terry, Krippendorff's alpha, attention
checks (flagged, excludable) and the CSV of every raw response."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from study.analysis import analyse, to_csv
from ui.study import admin_gate, lifecycle_controls, study_repo

P = "study_results."


st.title("📊 Study results")
if not admin_gate(P):
    st.stop()

repo = study_repo()
studies = repo.list_studies()
if not studies:
    st.info("No studies yet: create one in the Study designer.")
    st.stop()
code = st.selectbox("Study", [s["code"] for s in studies], key=P + "study",
                    format_func=lambda c: next(f"{s['title']} ({c})" for s in studies if s["code"] == c))
with st.expander(f"Study status: {repo.lifecycle(code).describe()}"):
    lifecycle_controls(repo, code, P)
rows = repo.response_rows(code)
people = repo.participants(code)
st.caption(f"{len(people)} participants, {sum(p['completed'] for p in people)} completed; {len(rows)} responses.")
st.download_button("Download all raw responses (CSV)", to_csv(rows), file_name=f"study_{code}_responses.csv",
                   mime="text/csv", key=P + "csv", disabled=not rows)
if not rows:
    st.info("No responses yet.")
    st.stop()

max_ok = st.slider("An attention check fails when its rating is above", 1, 4, 2, key=P + "max_ok")
res_all = analyse(rows, exclude_failed=False, max_ok=max_ok)
st.subheader("Attention checks")
if res_all["failed"]:
    st.warning(f"{len(res_all['failed'])} participant(s) failed an attention check.")
    st.dataframe(pd.DataFrame([{"participant": p, "failed checks": n} for p, n in res_all["failed"].items()]),
                 hide_index=True)
else:
    st.success("No attention-check failures.")
exclude = st.checkbox("Exclude participants who failed an attention check", True, key=P + "exclude")
res = analyse(rows, exclude_failed=exclude, max_ok=max_ok)

st.subheader("Ratings per method (mean ± 95 % CI)")
ratings = pd.DataFrame(res["ratings"])
if not ratings.empty and ratings["n"].sum() > 0:
    r = ratings[ratings["n"] > 0]
    fig = go.Figure(go.Bar(x=r["method"], y=r["mean"], error_y=dict(
        type="data", symmetric=False, array=(r["ci_high"] - r["mean"]).fillna(0),
        arrayminus=(r["mean"] - r["ci_low"]).fillna(0))))
    fig.update_layout(yaxis=dict(range=[0, 5.5], title="rating"), height=320, margin=dict(l=0, r=0, t=10, b=0))
    st.plotly_chart(fig, key=P + "ratings_fig")
    st.dataframe(ratings, hide_index=True)
alpha = res["alpha"]
st.metric("Krippendorff's alpha (ordinal)", "n/a" if alpha != alpha else f"{alpha:.3f}",
          help=f"{res['n_raters']} raters x {res['n_units']} rated maps")

st.subheader("Pairwise preferences")
if res["wins"].size:
    st.caption("Row beat column (times).")
    st.dataframe(pd.DataFrame(res["wins"].astype(int), index=res["items"], columns=res["items"]))
    st.dataframe(pd.DataFrame({"method": res["items"], "Bradley-Terry strength": res["bradley_terry"]})
                 .sort_values("Bradley-Terry strength", ascending=False), hide_index=True)
else:
    st.info("No pairwise answers.")
