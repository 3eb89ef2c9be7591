"""The Audio page in a real browser: open it from the sidebar, pick a bundled clip, see its waveform, spectrogram
and player; run Sobol on a tiny budget (4 x (4² + 1) = 68 queries) and see the heatmap, the "keeps" / "removes"
players and the IoU with the clip's ground-truth mask; then upload bytes that are not audio and see a clear error
while the page stays usable."""
import re

from playwright.sync_api import expect


def choose(page, wait_for_app, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
    wait_for_app(page)


def chart_title(scope, text: str):
    """A Plotly chart's title (Plotly may briefly hold two copies of it in the SVG: take the first)."""
    return scope.locator(".js-plotly-plot .gtitle").filter(has_text=text).first


def open_audio(page, app_url, wait_for_app) -> None:
    page.goto(app_url)
    wait_for_app(page, timeout=120_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Audio", exact=True).click()
    expect(page.get_by_role("heading", name="Audio")).to_be_visible(timeout=60_000)
    wait_for_app(page, timeout=120_000)


def test_audio_example_clip_run_sobol_and_listen(page, app_url, wait_for_app, small_sobol):
    open_audio(page, app_url, wait_for_app)

    choose(page, wait_for_app, "Example clip", "chirp")
    main = page.get_by_test_id("stMain")
    # the clip's player, its waveform and its spectrogram (with the ground-truth mask) are drawn
    expect(main.get_by_test_id("stAudio")).to_have_count(1, timeout=60_000)
    expect(chart_title(main, "Log-mel spectrogram with the ground-truth mask")).to_be_visible(timeout=60_000)
    expect(main.get_by_test_id("stPlotlyChart")).to_have_count(2)
    expect(main.locator(".js-plotly-plot").first).to_be_visible()
    # the top-predictions table (the class to explain defaults to its first row: checked in the heatmap's title)
    expect(main.get_by_test_id("stDataFrame").first).to_be_visible()

    choose(page, wait_for_app, "Method", "Sobol attribution")
    small_sobol(page)                        # 68 queries

    page.get_by_role("button", name="Run").click()
    progress = page.get_by_test_id("stProgress").first.get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=90_000)
    expect(page.get_by_test_id("stProgress").first).to_contain_text("68 / 68 queries")
    # the downloads appear only after the finished job's full rerun: from then on the page is final
    expect(page.get_by_role("button", name="Raw map (.npy)")).to_be_visible(timeout=60_000)
    wait_for_app(page)

    # the heatmap over the spectrogram, titled with the method and the explained class (the model's top-1: chirp)
    expect(chart_title(main, "Sobol attribution · chirp")).to_be_visible(timeout=30_000)
    # original + "only what the map keeps" + "what the map removes"
    expect(main.get_by_test_id("stAudio")).to_have_count(3, timeout=30_000)
    expect(main.get_by_text("Only what the map keeps").first).to_be_visible()
    expect(main.get_by_text("What the map removes").first).to_be_visible()
    metric = main.get_by_test_id("stMetric").filter(has_text="IoU with the ground-truth").first
    expect(metric).to_be_visible(timeout=30_000)
    value = metric.get_by_test_id("stMetricValue").inner_text().strip()
    assert re.fullmatch(r"\d\.\d{3}", value), value
    assert 0.0 <= float(value) <= 1.0, value
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_audio_bad_upload_shows_error_and_page_recovers(page, app_url, wait_for_app):
    open_audio(page, app_url, wait_for_app)
    main = page.get_by_test_id("stMain")

    main.get_by_text("Upload a clip", exact=True).click()
    wait_for_app(page)
    expect(main.get_by_text("No file yet")).to_be_visible(timeout=30_000)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        {"name": "bad.wav", "mimeType": "audio/wav", "buffer": b"not audio at all"})
    error = main.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("bad.wav", timeout=60_000)
    expect(error).to_contain_text("not a readable audio file")
    expect(error).to_contain_text("Upload a WAV, FLAC or OGG clip")
    wait_for_app(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(main.get_by_test_id("stAudio")).to_have_count(0)  # nothing to play, no crash

    # the page is still usable: back to the examples, another clip decodes and plays
    main.get_by_text("Example clip", exact=True).click()
    wait_for_app(page)
    choose(page, wait_for_app, "Example clip", "beep")
    expect(main.get_by_test_id("stAudio")).to_have_count(1, timeout=60_000)
    expect(main.get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(chart_title(main, "Log-mel spectrogram with the ground-truth mask")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Run")).to_be_enabled()
