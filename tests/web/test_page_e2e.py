"""The page as a person uses it: headless Chromium (Debian's ``chromium``) driven by Playwright
against uvicorn on a free 127.0.0.1 port.

Upload by the file chooser and by drag-and-drop, read the bars, see one CAM per label, move the
opacity slider, see a rejected file's message, download the CSV, take a screenshot. With
``FUNDUSLAB_SAVE_SCREENSHOTS=1`` the screenshot is also copied to ``docs/figures/web_page.png``.
Skips (with the reason) when Chromium or Playwright is missing; ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from funduslab.web.app import create_app

REPO = Path(__file__).resolve().parents[2]
LABELS = ["D", "G", "A"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(web_service) -> Iterator[str]:
    """uvicorn serving the tiny run in a thread, stopped after the module."""
    import uvicorn

    port = _free_port()
    app = create_app(web_service, allowed_hosts=["127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


def _save_copy(shot: Path) -> None:
    """Copy the screenshot into docs/figures atomically (temporary name, then rename)."""
    target = REPO / "docs" / "figures" / "web_page.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".web_page.", suffix=".png")
    os.close(fd)
    try:
        shutil.copyfile(shot, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def test_upload_bars_cams_slider_errors_csv_screenshot(browser, server_url: str, sample_images,
                                                       tmp_path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server_url) or r.url.startswith(
        "data:") or r.url.startswith("blob:") else outside.append(r.url))
    page.goto(server_url + "/")
    page.wait_for_selector("#model-select option", state="attached")
    assert "tiny" in page.inner_text("#model-select")
    card = page.inner_text("#model-card")
    assert "Not a medical device" in card and "tiny_cnn" in card and "offsite_test" in card

    # the file chooser: one fundus photograph and one text file dressed as a JPEG
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image\n" * 10)
    page.set_input_files("#file-input", [str(sample_images[0]), str(fake)])
    page.wait_for_selector(".result.rejected .result-error")
    page.wait_for_selector(".result.done .cam-view")
    rejected = page.inner_text(".result.rejected .result-error")
    assert "notes.jpg is not a JPEG, PNG or TIFF image" in rejected

    done = page.locator(".result.done").first
    assert done.locator(".bar-row").count() == 3
    assert [done.locator(".bar-row").nth(i).get_attribute("data-label")
            for i in range(3)] == LABELS
    assert done.locator(".cam-view").count() == 3
    heat = done.locator("img.heat").first
    assert heat.evaluate("img => img.complete && img.naturalWidth") == 32
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "0.5"
    done.locator(".opacity-slider").fill("0.85")
    assert heat.evaluate("img => getComputedStyle(img).opacity") == "0.85"
    assert done.locator(".opacity-value").inner_text() == "0.85"

    # drag-and-drop: a second photograph dropped on the zone
    data = base64.b64encode(sample_images[1].read_bytes()).decode()
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: "image/jpeg"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [data, sample_images[1].name])
    page.locator(".result.done").nth(1).wait_for()  # (wait_for_function needs eval: CSP)

    with page.expect_download() as info:
        page.click("#csv-button")
    csv = pd.read_csv(info.value.path())
    assert list(csv.columns) == ["id", "p_D", "p_G", "p_A", "D", "G", "A"]
    assert sorted(csv["id"]) == sorted(p.name for p in sample_images[:2])

    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "web_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("FUNDUSLAB_SAVE_SCREENSHOTS") == "1":
        _save_copy(shot)
    assert not errors, errors
    assert not outside, f"the page fetched from elsewhere: {outside}"
    page.close()
