"""Black-box saliency explorer: the frame (navigation + shared sidebar). Pages live in views/ (not pages/: Streamlit would also run files there directly on a cold server's deep links)."""
from pathlib import Path

import streamlit as st

from ui.state import describe_device, get_engine

ROOT = Path(__file__).resolve().parent

st.set_page_config(page_title="Black-box saliency explorer", page_icon="🔍", layout="wide")

# (file, title, icon, section). A page file that is not there yet is skipped.
PAGES = [
    ("views/home.py", "Home", "🏠", "Start"),
    ("views/explore.py", "Explore", "🔍", "Explain"),
    ("views/compare.py", "Compare", "⚖️", "Explain"),
    ("views/dataset.py", "Dataset", "🗂️", "Explain"),
    ("views/audio.py", "Audio", "🔊", "Explain"),
    ("views/lab.py", "Convergence lab", "📈", "Learn"),
    ("views/study_designer.py", "Study designer", "🧪", "Human studies"),
    ("views/study_results.py", "Study results", "📊", "Human studies"),
    ("views/study_participant.py", "Participate", "🙋", "Human studies"),
    ("views/models_cache.py", "Models and cache", "🧰", "About"),
]


def build_navigation():
    participant_link = "study" in st.query_params
    if participant_link:
        # A study link shows only the study, whatever page path it carries (…/study_participant?study=…, the
        # root, or an older …/study_designer?study=…): the participant page under every page's url_path, and
        # as the default page at "/" (a default page answers only there: alone, its own path was "not found").
        stems = [Path(f).stem for f, *_ in PAGES if (ROOT / f).exists()] + ["participate"]
        pages = [st.Page("views/study_participant.py", title="Participate", icon="🙋", url_path=stem,
                         default=stem == "participate") for stem in stems]
        return st.navigation(pages, position="hidden"), participant_link
    shown = [(f, t, i, sec) for f, t, i, sec in PAGES if (ROOT / f).exists()]
    sections: dict[str, list] = {}
    for n, (file, title, icon, section) in enumerate(shown):
        sections.setdefault(section, []).append(st.Page(file, title=title, icon=icon, default=n == 0,
                                                        url_path=Path(file).stem))
    return st.navigation(sections, position="sidebar"), participant_link


nav, participant_link = build_navigation()
if not participant_link:
    with st.sidebar:
        st.caption(f"**Device:** {describe_device()}")
        info = get_engine().cache_info()
        st.caption(f"**Cache:** {info['memory_results']} results in memory, {info['disk_results']} on disk "
                   f"({info['disk_bytes'] / 1e6:.1f} MB); {info['running']} running")
nav.run()
