"""What watching costs: a run watched on Explore in Chromium against the same run headless through the engine.

    .venv/bin/python bench/live_view.py                       # sobol and lr at CPU defaults on the cat, 2 reps
    .venv/bin/python bench/live_view.py --methods sobol --reps 3

Starts the real app (``cli.app_server.running_app``, private cache) and drives it with Playwright and Debian's Chromium
(``/usr/bin/chromium``; never ``playwright install``) at 1440 x 900, on the same machine. Per rep and method,
interleaved: the run watched on Explore (the engine's wall time, as the page's progress line reports it at
"done"), then the same run headless in this process (``Engine.run``, same model, backend, parameters; another
seed per rep so that no result comes from a cache). Prints a markdown table: watched / headless, and the
headless run with the model as scripts load it (on a small machine the app leaves a core to the page and the
browser: ``models.backends.interactive_threads``).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
TITLES = {"sobol": "Sobol attribution", "lr": "LR gradient estimation"}


def idle(page) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached",
                           timeout=120_000)


def watched(page, url: str, method: str, seed: int) -> float:
    """One run on Explore, watched to the end; the engine's wall time as the page reports it."""
    from playwright.sync_api import expect

    page.goto(f"{url}/explore")
    idle(page)
    box = page.get_by_role("combobox", name="Method", exact=True)
    title = TITLES.get(method, method)
    if box.input_value() != title:
        box.click()
        box.fill(title)          # typing filters the list: the option is then on screen
        page.get_by_role("option", name=title, exact=True).click()
        idle(page)
    seed_box = page.get_by_label("Seed")
    seed_box.fill(str(seed))
    seed_box.press("Enter")
    idle(page)
    page.get_by_role("button", name="Run").click()
    progress = page.get_by_test_id("stProgress")
    expect(progress).to_contain_text("done", timeout=900_000)
    text = progress.inner_text()
    m = re.search(r"elapsed (?:(\d+) min )?([\d.]+) s", text)
    if not m:
        raise RuntimeError(f"no elapsed time in {text!r}")
    return 60 * int(m.group(1) or 0) + float(m.group(2))


_MODELS: dict[bool, tuple] = {}


def headless(method: str, seed: int, as_app: bool = True) -> float:
    """The same run through the engine in this process; ``as_app``: the model as the app loads it
    (ui.state.get_model: the same backend, threads and batch size), else as a script does."""
    from PIL import Image

    from explainers import explainer_class
    from models import explained_view, load_model
    from models.backends import interactive_threads
    from runtime.engine import Engine

    if as_app not in _MODELS:
        threads = interactive_threads() if as_app else None
        bb = explained_view(load_model("efficientnet_lite0", device="cpu", threads=threads))
        x = bb.preprocess(Image.open(ROOT / "assets" / "examples" / "cat.png"))
        _MODELS[as_app] = (bb, x, Engine(disk_cache=False))
    bb, x, engine = _MODELS[as_app]
    snap = engine.run(bb, x, method, explainer_class(method).defaults("cpu"), target=None, seed=seed,
                      use_cache=False)
    return snap.elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="*", default=["sobol", "lr"])
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from cli.app_server import running_app
    cache = Path(tempfile.mkdtemp(prefix="live-view-"))
    os.environ["SALIENCY_CACHE_DIR"] = str(cache)     # the same ONNX export and tuning as the app
    times: dict[str, list[tuple[float, float, float]]] = {m: [] for m in args.methods}
    with running_app(dict(os.environ)) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            watched(page, url, args.methods[0], 10_000)   # warm-up: the app loads the model and tunes it
            headless(args.methods[0], 10_000)
            headless(args.methods[0], 10_000, as_app=False)
            for rep in range(args.reps):
                for m in args.methods:
                    w = watched(page, url, m, rep + 1)
                    h = headless(m, rep + 1)
                    s = headless(m, rep + 1, as_app=False)
                    times[m].append((w, h, s))
                    print(f"# {m} rep {rep + 1}: watched {w:.1f} s, headless {h:.1f} s, as a script {s:.1f} s",
                          flush=True)
            browser.close()
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print("| method (CPU defaults, cat) | watched on Explore (s) | headless, the app's model (s) | watched / "
          "headless | headless, a script's model (s) |")
    print("|---|---|---|---:|---|")
    for m, rows in times.items():
        ratio = sum(r[0] for r in rows) / sum(r[1] for r in rows)
        col = lambda i: ", ".join(f"{r[i]:.1f}" for r in rows)  # noqa: E731
        print(f"| {m} | {col(0)} | {col(1)} | {ratio:.2f} | {col(2)} |")


if __name__ == "__main__":
    main()
