"""The report in a real browser: Debian's headless Chromium opens it from file://.

Checks what only a browser can: no console errors, one leaderboard row per model, every figure
decodes and is not blank, and the niivue viewer draws the volumes with the masks (WebGL2 through
SwiftShader). Screenshots go to ``test-artifacts/`` for a person to look at. Missing chromium,
chromedriver or selenium is a failure with a clear message, never a silent skip.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neurofm.report import build_report
from test_report import MODELS, write_results_folder

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--window-size=1280,1200",
)


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"browser test needs {', '.join(missing)}: run `apt-get install -y chromium "
            "chromium-driver` (scripts/install.sh --test does it)",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("browser test needs selenium: `.venv/bin/pip install selenium`", pytrace=False)


TASKS = ("meningioma", "brain_age")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_results_folder(tmp_path_factory.mktemp("run"), n_per_site=6, tasks=TASKS)
    return build_report(run, tmp_path_factory.mktemp("report"), n_boot=100).parent


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(60)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield drv
    finally:
        drv.quit()


def _severe(drv: Any) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _n_colours(pixels: np.ndarray) -> int:
    rgb = pixels.astype(np.int32)
    return len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))


def _colourful(pixels: np.ndarray) -> float:
    """Share of clearly coloured pixels: grey volumes and white crosshairs have R = G = B."""
    return float((np.ptp(pixels.astype(np.int16), axis=2) > 60).mean())


def _full_page(drv: Any, path: Path) -> bytes:
    """Screenshot of the whole page, not only the window (Chrome DevTools protocol)."""
    import base64

    height = int(drv.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    shot = drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    png = base64.b64decode(shot["data"])
    path.write_bytes(png)
    return png


def _wait(drv: Any, script: str, timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = drv.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def test_index_page(driver: Any, report: Path) -> None:
    driver.get((report / "index.html").as_uri())
    _wait(driver, "return document.readyState === 'complete'")
    for task in TASKS:
        rows = driver.execute_script(
            f"return document.querySelectorAll('#leaderboard-{task} tbody tr').length"
        )
        assert rows == len(MODELS), task
    images = driver.find_elements("css selector", "figure img")
    assert len(images) == 3 * len(TASKS) + 1  # sites, rank stability, vs scratch; one curve
    page = _pixels(_full_page(driver, ARTIFACTS / "report-index.png"))
    for img in images:
        src = img.get_attribute("src")
        assert driver.execute_script("return arguments[0].complete", img), src
        assert driver.execute_script("return arguments[0].naturalWidth", img) > 0, src
        x, y, w, h = (
            round(v)
            for v in driver.execute_script(
                "const r = arguments[0].getBoundingClientRect();"
                "return [r.left + scrollX, r.top + scrollY, r.width, r.height];",
                img,
            )
        )
        assert w > 100 and h > 100, src
        crop = page[y + 2 : y + h - 2, x + 2 : x + w - 2]
        assert crop.std() > 10, f"{src} looks blank"
        assert _n_colours(crop) > 8, f"{src} has almost no colours"
    board = driver.find_element("id", "leaderboard-meningioma")
    (ARTIFACTS / "report-leaderboard.png").write_bytes(board.screenshot_as_png)
    assert _severe(driver) == []


def test_viewer_draws_volumes_and_masks(driver: Any, report: Path) -> None:
    driver.get((report / "viewer.html").as_uri())
    state = _wait(
        driver,
        "const s = document.body.dataset.viewer; return s === 'ready' || s === 'error' ? s : ''",
    )
    status = driver.find_element("id", "viewer-status").text
    assert state == "ready", status
    assert "site_b-000" in status
    time.sleep(0.5)
    canvas = driver.find_element("id", "niivue-canvas")
    shot = canvas.screenshot_as_png
    (ARTIFACTS / "report-viewer-canvas.png").write_bytes(shot)
    with_masks = _pixels(shot)
    assert with_masks.std() > 10, "niivue canvas is blank"
    _full_page(driver, ARTIFACTS / "report-viewer.png")
    colourful = _colourful(with_masks)
    assert colourful > 0.002, "no mask overlay visible"

    toggles = driver.find_elements("css selector", "#overlay-toggles input")
    assert len(toggles) == 1 + len(MODELS)
    shown = [t for t in toggles if t.is_selected()]
    assert len(shown) == 2, "reference and first model should start visible"
    for t in shown:
        t.click()
    time.sleep(0.4)
    without = _pixels(canvas.screenshot_as_png)
    assert _colourful(without) < colourful / 2, "toggles do nothing"

    driver.execute_script(
        "const s = document.getElementById('case-select'); s.selectedIndex = 1;"
        "s.dispatchEvent(new Event('change'));"
    )
    _wait(driver, "return document.body.dataset.viewer === 'ready'")
    assert "site_c-000" in driver.find_element("id", "viewer-status").text
    rows = driver.execute_script(
        "return document.querySelectorAll('#case-metrics tbody tr').length"
    )
    assert rows == len(MODELS)
    driver.execute_script(
        "const s = document.getElementById('view-select'); s.value = 'render';"
        "s.dispatchEvent(new Event('change'));"
    )
    time.sleep(0.5)
    render = canvas.screenshot_as_png
    assert _pixels(render).std() > 5, "3D render is blank"
    (ARTIFACTS / "report-viewer-render.png").write_bytes(render)

    assert _severe(driver) == []
