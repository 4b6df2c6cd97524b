"""The review page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
driven by Selenium against the app served by uvicorn on the tiny model.

Nothing is downloaded at run time: the driver and the browser are the system's. When they cannot
be had, the tests skip and say why (`.ci/run` installs them when missing).

`python -m tests.test_browser --model models/bert --report docs/review-example.txt --out docs/review-page.png`
makes the README's screenshot with the same helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import skip_unless_required

from renda.labels import LABELS
from renda.records import Record, read_jsonl
from renda.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPORT_ID = "qinghe-county-2025"
RECORD_KEYS = {"report_id", "text", "label", "heading", "heading_path", "is_heading", "position"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--lang=zh-CN"]


class NoBrowser(RuntimeError):
    """No usable headless Chromium here (the message says what is missing)."""


def find_browser() -> tuple[str, str]:
    """(Chromium binary, chromedriver) of the system, or NoBrowser naming what is missing."""
    def first_file(*candidates: str | None) -> str | None:
        return next((p for p in candidates if p and Path(p).is_file()), None)

    # CHROME_BIN / CHROMEDRIVER name others; Debian's real binary before its wrapper script
    browser = first_file(os.environ.get("CHROME_BIN"), "/usr/lib/chromium/chromium",
                         *(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")))
    driver = first_file(os.environ.get("CHROMEDRIVER"), shutil.which("chromedriver"), "/usr/lib/chromium/chromedriver")
    if not browser or not driver:
        missing = " and ".join(name for name, found in (("chromium", browser), ("chromedriver", driver)) if not found)
        raise NoBrowser(f"no {missing} on this machine (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


@contextmanager
def chromium(downloads: Path, width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A headless Chromium with a fresh profile, downloads going to `downloads`."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise NoBrowser(f"selenium is not installed ({error}); `pip install -e '.[dev]'`") from error
    browser, driver_path = find_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to fetch a driver
    with tempfile.TemporaryDirectory(prefix="renda-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
        try:
            driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        except Exception as error:  # a browser that will not start is no browser
            raise NoBrowser(f"headless Chromium did not start: {' '.join(str(error).split())[:300]}") from error
        try:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
            yield driver
        finally:
            driver.quit()


@contextmanager
def served(app, timeout: float = 120.0) -> Iterator[str]:
    """The app under uvicorn in a thread on a free port; its base URL once the model is ready."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the port is ours from here: no race for a free one
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the app at {base} was not ready within {timeout} s")
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def wait(driver, condition, timeout: float = 60.0, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def scrolled_still(driver) -> None:
    """Wait for a smooth scroll to end: a click aimed while the page moves lands beside its target."""
    import time

    last = None
    for _ in range(100):
        now = driver.execute_script("return [window.scrollX, window.scrollY]")
        if now == last:
            return
        last = now
        time.sleep(0.15)
    raise AssertionError("the page never stopped scrolling")


def set_value(driver, element_id: str, value: str) -> None:
    """As a paste does: the value, then an input event."""
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                          "e.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)


def label_report(driver, base: str, text: str, report_id: str) -> list:
    """Open the page, paste the report, label it; the paragraph elements once they are all there."""
    expected = len(httpx.post(base + "/v1/reports", json={"text": text}, timeout=120).json()["paragraphs"])
    driver.get(base + "/")
    wait(driver, lambda d: len(find(d, "#legend li")) == len(LABELS), message="the labels never loaded")
    set_value(driver, "report-text", text)
    set_value(driver, "report-id", report_id)
    find(driver, "#report-submit")[0].click()
    wait(driver, lambda d: len(find(d, "#report-view .para")) == expected and find(d, "#chart svg rect"),
         message="the coloured report and its chart never appeared")
    return find(driver, "#report-view .para")


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(tiny_model, tmp_path_factory):
    from serving.main import create_app
    from tests.test_service import settings

    corrections = tmp_path_factory.mktemp("corrections")
    app = create_app(settings(corrections_dir=corrections, max_report_chars=20_000, max_body_bytes=200_000), model_dir=tiny_model)
    with served(app) as base:
        yield base, corrections


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    try:
        with chromium(downloads) as driver:
            yield driver, downloads
    except NoBrowser as reason:
        skip_unless_required("browser", str(reason))


def test_the_page_is_served_by_the_app_and_fetches_nothing_from_elsewhere(tmp_path):
    """GET / and its files, without a browser (so this runs everywhere)."""
    import re

    from fastapi.testclient import TestClient

    from serving.main import create_app
    from serving.page import STATIC
    from tests.test_service import Recording, settings

    with TestClient(create_app(settings(corrections_dir=tmp_path), load=Recording)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/app.js" in page.text and "/static/app.css" in page.text
        for name in ("app.js", "app.css"):
            assert client.get(f"/static/{name}").status_code == 200
        assert client.get("/static/../routers.py").status_code == 404
        assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API
    for path in STATIC.iterdir():  # no CDN, no web fonts: every URL is the app's own (the SVG namespace is a name)
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'`)]*", path.read_text(encoding="utf-8")))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)


def test_review_a_report_correct_a_label_and_export_it(app_url, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    (base, corrections), (driver, downloads) = app_url, browser
    text = (FIXTURES / "browser_report.txt").read_text(encoding="utf-8")
    api = httpx.post(base + "/v1/reports", json={"text": text, "min_score": 0.5}, timeout=120).json()
    paragraphs = label_report(driver, base, text, REPORT_ID)
    calibration = wait(driver, lambda d: d.find_element("id", "calibration").text)  # the tiny model was calibrated on dev
    assert "T = " in calibration and "ECE" in calibration

    # Every paragraph as written, coloured by its section label; headings as headings.
    assert [p.get_attribute("data-label") for p in paragraphs] == [p["section_label"] for p in api["paragraphs"]]
    shown = driver.execute_script("return [...document.querySelectorAll('#report-view .para')].map(n => n.lastChild.textContent)")
    assert shown == [p["text"] for p in api["paragraphs"]]
    assert [p.tag_name in ("h2", "h3", "h4", "h5") for p in paragraphs] == [p["is_heading"] for p in api["paragraphs"]]
    colours: dict[str, set[str]] = {}
    for p in paragraphs:
        colours.setdefault(p.get_attribute("data-label"), set()).add(p.value_of_css_property("border-left-color"))
    assert all(len(c) == 1 for c in colours.values()) and len({c.pop() for c in colours.values()}) == len(colours)
    # The outline (one line per section) and the chart (paragraphs and characters per label).
    assert len(find(driver, "#outline li")) == len(api["sections"])
    bars = {kind: {b.get_attribute("data-label"): int(b.get_attribute("data-value")) for b in find(driver, f"#chart rect.bar-{kind}")}
            for kind in ("paragraphs", "characters")}
    assert set(bars["paragraphs"]) == set(LABELS)
    assert bars["paragraphs"] == {label: sum(p["section_label"] == label for p in api["paragraphs"]) for label in LABELS}
    assert sum(bars["characters"].values()) == sum(len(p["text"]) for p in api["paragraphs"])
    # Low confidence marked with the threshold (0.5 by default): as the API's `uncertain`; then moved.
    uncertain = lambda: ["uncertain" in p.get_attribute("class").split() for p in find(driver, "#report-view .para")]  # noqa: E731
    assert uncertain() == [p["uncertain"] for p in api["paragraphs"]]
    for value, want in (("1", True), ("0", False)):
        set_value(driver, "min-score", value)
        assert uncertain() == [want] * len(paragraphs)
    set_value(driver, "min-score", "0.5")

    # Hover: the scores and what decided the label.
    at = next(i for i, p in enumerate(api["paragraphs"]) if not p["is_heading"] and p["heading_path"])
    target = api["paragraphs"][at]
    ActionChains(driver).move_to_element(find(driver, f'.para[data-index="{at}"]')[0]).perform()
    tooltip = wait(driver, lambda d: d.find_element("id", "tooltip").is_displayed() and d.find_element("id", "tooltip"))
    assert f"source: {target['source']}" in tooltip.text and f"{target['score']:.3f}" in tooltip.text
    assert all(label in tooltip.text for label in LABELS)

    # Click the paragraph, pick another label: the page shows it, counts it and charts it.
    new = next(label for label in ("deputy", "plans", "legislation") if label != target["section_label"])
    find(driver, f'.para[data-index="{at}"]')[0].click()
    wait(driver, lambda d: d.find_element("id", "picker").is_displayed())
    find(driver, f'#picker button[data-label="{new}"]')[0].click()
    changed = wait(driver, lambda d: find(d, f'.para[data-index="{at}"][data-label="{new}"]'))[0]
    assert "corrected" in changed.get_attribute("class").split()
    assert driver.find_element("id", "correction-count").text == "1"
    assert int(find(driver, f'#chart rect.bar-paragraphs[data-label="{new}"]')[0].get_attribute("data-value")) == bars["paragraphs"][new] + 1
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(tmp_path / "review-page.png"))
    assert (tmp_path / "review-page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Export: one JSONL row in the project's record format, readable as a training file.
    driver.find_element("id", "export").click()
    exported = downloads / f"{REPORT_ID}.jsonl"
    wait(driver, lambda d: exported.is_file() and not list(downloads.glob("*.crdownload")), 30, "the export was never downloaded")
    [row] = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert set(row) == RECORD_KEYS
    assert row == {"report_id": REPORT_ID, "text": target["text"], "label": new, "heading": target["heading_path"][-1],
                   "heading_path": target["heading_path"], "is_heading": False, "position": at}
    assert read_jsonl(exported) == [Record(**row)]

    # Save: the same row stored on the server, under the corrections folder, one file per report.
    driver.find_element("id", "save").click()
    wait(driver, lambda d: d.find_element("id", "save-status").get_attribute("data-saved") == "1", 30, "the save never finished")
    [stored] = read_jsonl(corrections / f"{REPORT_ID}.jsonl")
    assert stored == Record(**row)

    # The page keeps its corrections: reloaded and labelled again, the paragraph is still corrected.
    again = label_report(driver, base, text, REPORT_ID)
    assert again[at].get_attribute("data-label") == new and driver.find_element("id", "correction-count").text == "1"


@pytest.mark.parametrize("kind", ["docx", "pdf", "gb18030"])
def test_open_a_file_sends_it_as_it_is(app_url, browser, tmp_path, kind):
    """"Open a file" uploads the file itself: a .docx, a PDF or a GB18030 text is read by the service, labelled,
    and the page says what it read; the text box then holds the paragraphs read."""
    from training.formats import SUFFIX, render

    (base, _), (driver, _) = app_url, browser
    text = (FIXTURES / "browser_report.txt").read_text(encoding="utf-8")
    path = tmp_path / f"yanhu-2024{SUFFIX[kind]}"
    path.write_bytes(render(kind, text, text.strip().splitlines()[0].strip()))
    expected = httpx.post(base + "/v1/reports", files={"file": (path.name, path.read_bytes())}, timeout=120).json()
    driver.get(base + "/")
    wait(driver, lambda d: len(find(d, "#legend li")) == len(LABELS), message="the labels never loaded")
    find(driver, "#report-file")[0].send_keys(str(path))
    status = wait(driver, lambda d: d.find_element("id", "report-status").get_attribute("data-read"), message="the file was never read")
    assert status == expected["read"]["format"]
    assert f"{path.name}: {expected['read']['format']}" in driver.find_element("id", "report-status").text
    paragraphs = find(driver, "#report-view .para")
    assert [p.get_attribute("data-label") for p in paragraphs] == [p["section_label"] for p in expected["paragraphs"]]
    assert driver.find_element("id", "report-text").get_attribute("value") == "\n".join(p["text"] for p in expected["paragraphs"])
    assert driver.find_element("id", "report-id").get_attribute("value") == "yanhu-2024"


@pytest.fixture(scope="module")
def review_app(tiny_model, tiny_base, tmp_path_factory):
    """A service with ADMIN_TOKEN set that retrains the tiny model (a copy) from the page."""
    import shutil

    from serving.main import create_app
    from tests.test_review import TOKEN, retrain_settings

    root = tmp_path_factory.mktemp("review-app")
    shutil.copytree(tiny_model, root / "model")
    settings = retrain_settings(root, tiny_base, max_report_chars=20_000, max_body_bytes=200_000)
    with served(create_app(settings, model_dir=root / "model")) as base:
        yield base, root / "corrections", TOKEN


def test_next_doubtful_and_the_reason_on_hover(review_app, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    (base, _, _), (driver, _) = review_app, browser
    text = (FIXTURES / "browser_report.txt").read_text(encoding="utf-8")
    api = httpx.post(base + "/v1/reports", json={"text": text}, timeout=120).json()
    label_report(driver, base, text, REPORT_ID)
    body = [(p["doubt"], -i, i) for i, p in enumerate(api["paragraphs"]) if not p["is_heading"]]
    order = [i for _, _, i in sorted(body, reverse=True)]
    driver.find_element("tag name", "body").send_keys("n")  # the key
    wait(driver, lambda d: find(d, "#report-view .para.current"), message="n never moved to a paragraph")
    assert find(driver, "#report-view .para.current")[0].get_attribute("data-index") == str(order[0])
    scrolled_still(driver)  # "n" scrolled the paragraph into view, smoothly
    driver.find_element("id", "next-doubtful").click()  # the button: the next most doubtful
    current = lambda d: find(d, "#report-view .para.current")[0].get_attribute("data-index")  # noqa: E731
    wait(driver, lambda d: current(d) != str(order[0]), timeout=10, message="the button never moved on")
    assert current(driver) == str(order[1])
    assert len(find(driver, "#report-view .para.doubtful")) == sum(d >= 0.5 for d, _, _ in body)
    assert len(find(driver, "#outline li")) == len(api["sections"])
    assert all("存疑" in li.text for li in find(driver, "#outline li"))

    # Hover: the reason (the sentence whose removal moves the score most) is asked for and shown.
    from model.review import sentences

    i = max((i for i, p in enumerate(api["paragraphs"]) if not p["is_heading"]),
            key=lambda i: len(sentences(api["paragraphs"][i]["text"])) + len(api["paragraphs"][i]["heading_path"]))
    p = api["paragraphs"][i]
    expected = httpx.post(base + "/v1/explain", json={"text": p["text"], "heading_path": p["heading_path"], "label": p["label"]},
                          timeout=60).json()["reason"]
    node = find(driver, f'#report-view .para[data-index="{i}"]')[0]
    scrolled_still(driver)  # the button scrolled too: a pointer placed mid-scroll leaves the paragraph again
    ActionChains(driver).move_to_element(node).perform()
    line = wait(driver, lambda d: find(d, "#tooltip .reason-line"), message="the reason never appeared")[0]
    assert expected["text"] in line.text
    if expected["kind"] == "sentence":
        assert find(driver, f'#report-view .para[data-index="{i}"] mark.reason')[0].text == expected["text"]


def test_without_the_token_nothing_is_saved_or_retrained(review_app, browser):
    (base, corrections, _), (driver, _) = review_app, browser
    text = (FIXTURES / "browser_report.txt").read_text(encoding="utf-8")
    paragraphs = label_report(driver, base, text, "no-token-report")
    paragraphs[1].click()
    wait(driver, lambda d: d.find_element("id", "picker").is_displayed())
    find(driver, "#picker button")[0].click()
    driver.find_element("id", "save").click()
    error = wait(driver, lambda d: d.find_element("id", "error").is_displayed() and d.find_element("id", "error"))
    assert "admin token" in error.text
    driver.find_element("id", "retrain").click()
    wait(driver, lambda d: "ADMIN_TOKEN" in d.find_element("id", "error").text, message="the retrain was not refused")
    assert not corrections.exists() or not list(corrections.iterdir())
    assert httpx.get(base + "/v1/retrain").json()["status"] == "idle"


def test_retrain_from_the_page_shows_progress_and_the_new_model(review_app, browser):
    (base, corrections, token), (driver, _) = review_app, browser
    text = (FIXTURES / "browser_report.txt").read_text(encoding="utf-8")
    old = httpx.get(base + "/v1/model").json()["model"]
    paragraphs = label_report(driver, base, text, "token-report")
    set_value(driver, "admin-token", token)
    paragraphs[1].click()
    wait(driver, lambda d: d.find_element("id", "picker").is_displayed())
    find(driver, "#picker button")[0].click()
    driver.find_element("id", "save").click()
    wait(driver, lambda d: d.find_element("id", "save-status").get_attribute("data-saved") == "1", 30, "the save never finished")
    assert (corrections / "token-report.jsonl").is_file()
    driver.find_element("id", "retrain").click()
    seen = set()

    def finished(d):
        status = d.find_element("id", "retrain-status")
        seen.add(status.text.split(":")[0])
        return status.get_attribute("data-status") in ("done", "failed") and status

    status = wait(driver, finished, 240, "the retrain never finished")
    assert status.get_attribute("data-status") == "done", status.text
    new = httpx.get(base + "/v1/model").json()["model"]
    assert new != old and status.get_attribute("data-model") == new
    assert new in status.text and old in status.text and "held-out" in status.text
    assert any(text.startswith("训练中 Training") for text in seen), seen
    assert new in driver.find_element("id", "model-status").text


def test_errors_from_the_api_are_shown_as_messages(app_url, browser):
    (base, _), (driver, _) = app_url, browser
    driver.get(base + "/")
    wait(driver, lambda d: len(find(d, "#legend li")) == len(LABELS))
    set_value(driver, "report-text", "This report has no Chinese in it at all.")
    driver.find_element("id", "report-submit").click()
    error = wait(driver, lambda d: d.find_element("id", "error").is_displayed() and d.find_element("id", "error"))
    assert "no Chinese characters" in error.text and "Traceback" not in error.text
    set_value(driver, "report-text", "审" * 20_001)  # over the app's report limit (20,000 here)
    driver.find_element("id", "report-submit").click()
    wait(driver, lambda d: "20,000" in d.find_element("id", "error").text, message="the over-limit message never appeared")
    assert "Over the limit" in driver.find_element("id", "error").text


def test_the_paragraphs_tab_labels_one_paragraph_per_line(app_url, browser):
    (base, _), (driver, _) = app_url, browser
    driver.get(base + "/")
    wait(driver, lambda d: len(find(d, "#legend li")) == len(LABELS))
    driver.find_element("id", "tab-paragraphs-button").click()
    lines = ["审议通过地方性法规两件。", "", "组织代表开展集中视察活动三次。", "加强机关干部队伍建设。"]
    set_value(driver, "paragraphs-text", "\n".join(lines))
    driver.find_element("id", "paragraphs-submit").click()
    rows = wait(driver, lambda d: len(find(d, "#paragraphs-result tbody tr")) == 3 and find(d, "#paragraphs-result tbody tr"))
    api = httpx.post(base + "/v1/classify", json={"paragraphs": [l for l in lines if l]}).json()["results"]
    assert [r.get_attribute("data-label") for r in rows] == [r["label"] for r in api]
    assert [r.find_elements("css selector", "td")[1].text for r in rows] == [l for l in lines if l]

    assert driver.find_element("id", "paragraphs-count").text == "3"


def test_the_paragraphs_tab_counts_lines_against_the_limit(tiny_model, browser):
    """A paste over the service's paragraphs-per-request limit is caught before it is sent."""
    from serving.main import create_app
    from tests.test_service import settings

    driver, _ = browser
    with served(create_app(settings(max_paragraphs=3), model_dir=tiny_model)) as base:
        driver.get(base + "/")
        wait(driver, lambda d: d.find_element("id", "model-status").get_attribute("data-ready") == "true")
        driver.find_element("id", "tab-paragraphs-button").click()
        set_value(driver, "paragraphs-text", "第一段。\n\n第二段。\n第三段。")
        assert driver.find_element("id", "paragraphs-count").text == "3"
        assert driver.find_element("id", "paragraphs-submit").is_enabled()
        set_value(driver, "paragraphs-text", "第一段。\n第二段。\n第三段。\n第四段。")
        assert driver.find_element("id", "paragraphs-count").text == "4"
        assert "over the limit of 3" in driver.find_element("id", "paragraphs-limit").text
        assert not driver.find_element("id", "paragraphs-submit").is_enabled()
        set_value(driver, "paragraphs-text", "第一段。")
        assert driver.find_element("id", "paragraphs-submit").is_enabled()


# --- the README's screenshot ---------------------------------------------------------------------


def screenshot(model: Path, report: Path, out: Path, corrections: list[tuple[int, str]], hover: int | None) -> None:
    """The page on a report, with some corrections made and a tooltip open, as a PNG."""
    from selenium.webdriver.common.action_chains import ActionChains

    from serving.main import create_app

    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings(corrections_dir=Path(scratch) / "corrections", threads=2), model_dir=model)
        with served(app, timeout=300) as base, chromium(Path(scratch), 1500, 1100) as driver:
            label_report(driver, base, report.read_text(encoding="utf-8"), report.stem)
            for index, label in corrections:
                find(driver, f'.para[data-index="{index}"]')[0].click()
                find(driver, f'#picker button[data-label="{label}"]')[0].click()
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1500, min(height + 40, 2600))
            driver.execute_script("window.scrollTo(0, 0)")
            if hover is not None:
                ActionChains(driver).move_to_element(find(driver, f'.para[data-index="{hover}"]')[0]).perform()
                time.sleep(0.3)
            driver.save_screenshot(str(out))
    from PIL import Image

    # 128 colours without dithering: text stays crisp, the file a third of the size (it lives in git)
    Image.open(out).convert("RGB").quantize(128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"screenshot written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot of the review page on a report (for the README).")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--correct", nargs="*", default=[], help="INDEX=LABEL corrections to make first")
    parser.add_argument("--hover", type=int, default=None, help="paragraph index to hover over")
    args = parser.parse_args()
    screenshot(args.model, args.report, args.out, [(int(i), l) for i, l in (c.split("=") for c in args.correct)], args.hover)
