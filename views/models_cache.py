"""Models and cache: which models load here, on which device, and what the engine has cached."""
import pandas as pd
import streamlit as st

from models import list_models, model_info
from ui.state import describe_device, get_engine, get_model

st.title("Models and cache")
st.write(f"Running on **{describe_device()}**.")

rows = [{"model": n, "modality": model_info(n).modality, "description": model_info(n).description}
        for n in list_models()]
st.dataframe(pd.DataFrame(rows), hide_index=True)

name = st.selectbox("Check a model", [r["model"] for r in rows if r["modality"] == "image"])
if st.button("Load and classify the cat photo"):
    from PIL import Image
    from skimage import data

    bb = get_model(name)
    x = bb.preprocess(Image.fromarray(data.chelsea()))
    st.table(pd.DataFrame(bb.predict(x, 5), columns=["class", "label", "probability"]))
    st.caption(f"Forward batch size chosen for this device: {bb.batch_size}")

info = get_engine().cache_info()
st.subheader("Result cache")
st.json(info)
if st.button("Clear the result cache"):
    get_engine().clear_cache()
    st.success("Cache cleared.")
