"""The web UI of `ckl serve` in a real browser: Debian's chromium, driven by selenium.

One server on a SQLite file (the UI reads only the HTTP API, so one backend is enough) with a
token file, so every request and stream of the page must carry the token pasted into its form;
one headless browser (started while the server starts: both are the test's slow part). A worker
thread yields, completes and fails batches over HTTP while the page is open; every check is an
explicit wait for a DOM condition (never a sleep), so a page that only updates on reload fails.
Screenshots (token form, run list, run page live, a failure, time travel) go to the test's
tmp_path and, when ``CKL_SCREENSHOTS`` names a directory, there too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.ckl.server.conftest import Server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import httpx
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 15.0
RUN = "ui-run"
XSS_RUN = "<img src=x onerror=window.__xss=1>"
TOKEN = "ui-test-token-0123456789abcdef"  # noqa: S105  (the test server's own token)


def _require_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless chromium at 1400x900 with a fresh profile."""
    _require_chromium()
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[WebDriver, str], Path]:
    """save(driver, name): a screenshot under tmp_path, copied to $CKL_SCREENSHOTS if set."""
    stable = os.environ.get("CKL_SCREENSHOTS")

    def save(driver: WebDriver, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot {name}"
        if stable:
            Path(stable).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(stable) / path.name)
        return path

    return save


def _until(driver: WebDriver, what: str, condition: Callable[[WebDriver], Any]) -> Any:
    """Wait until condition(driver) is truthy; on timeout say what was awaited."""
    from selenium.common.exceptions import (  # noqa: PLC0415
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.wait import WebDriverWait  # noqa: PLC0415

    wait = WebDriverWait(
        driver,
        WAIT,
        poll_frequency=0.05,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    try:
        return wait.until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:2000]
        pytest.fail(f"the page never showed {what}; it shows:\n{body}")


def _css(driver: WebDriver, selector: str) -> list[Any]:
    return driver.find_elements("css selector", selector)


_LANES_JS = """
const lanes = {};
for (const g of document.querySelectorAll('#lanes g.lane')) {
  lanes[g.dataset.batch] = {
    status: g.dataset.status,
    yields: Number(g.dataset.yields),
    progress: g.querySelector('.lane-progress').textContent,
    marks: [...g.querySelectorAll('.ev')].map(
      (m) => [...m.classList].find((c) => c.startsWith('ev-'))),
  };
}
return lanes;
"""


def _lanes(driver: WebDriver) -> dict[str, dict[str, Any]]:
    """Each lane's status, yield count, progress text and marks, read in one go (no stale nodes)."""
    lanes: dict[str, dict[str, Any]] = driver.execute_script(_LANES_JS)
    return lanes


def _lane_has(driver: WebDriver, batch: int, yields: int, progress: str) -> bool:
    lane = _lanes(driver).get(str(batch))
    return lane is not None and lane["yields"] == yields and lane["progress"] == progress


def _text(driver: WebDriver, selector: str) -> str:
    text: str | None = driver.execute_script(
        "const el = document.querySelector(arguments[0]); return el && el.textContent", selector
    )
    return text or ""


def _post(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(f"/v1/runs/{RUN}/checkpoints/{path}", json=body or {})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def starting(tmp_path: Path) -> Iterator[Future[Server]]:
    """`ckl serve` with a token file, starting in a thread (the browser starts meanwhile)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ui read,write,operate {TOKEN}\n", encoding="utf-8")
    server = Server(
        f"sqlite:///{tmp_path}/ui.db", "--poll-interval", "0.05", "--token-file", str(tokens)
    )
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(server.start)
        try:
            yield future
        finally:
            with contextlib.suppress(Exception):
                future.result()
                server.stop()
            if server.process is not None and server.process.stdout is not None:
                server.process.stdout.close()


def test_the_web_ui_follows_runs_live_and_travels_in_time(
    starting: Future[Server], browser: WebDriver, shots: Callable[[WebDriver, str], Path]
) -> None:
    server = starting.result()
    with server.client(TOKEN) as client:
        for batch in range(3):
            _post(client, str(batch), {"total_batches": 3, "metadata": {"total_items": 100}})
        xss = client.post(f"/v1/runs/{XSS_RUN}/checkpoints/0", json={})
        assert xss.status_code == 200, xss.text
        browser.get(server.url + "/")
        _token_form(browser, shots)
        _run_list(client, browser, shots)
        moments = _live_run_page(client, browser, shots)
        _failures(client, browser, shots)
        _time_travel(client, browser, shots, moments)


def _token_form(browser: WebDriver, shots: Callable[[WebDriver, str], Path]) -> None:
    """The API answers 401: the page asks for a token, refuses a wrong one, takes the right one."""
    overlay = "token-overlay"
    _until(browser, "the token form", lambda d: d.find_element("id", overlay).is_displayed())
    shots(browser, "00-token-form")
    browser.find_element("id", "token-input").send_keys("wrong-token-0123456789\n")
    _until(browser, "the refusal", lambda d: d.find_element("id", "token-error").is_displayed())
    browser.find_element("id", "token-input").send_keys(TOKEN + "\n")
    _until(browser, "the form gone", lambda d: not d.find_element("id", overlay).is_displayed())
    assert browser.execute_script("return sessionStorage.getItem('ckl.token')") == TOKEN


def _run_list(
    client: httpx.Client, browser: WebDriver, shots: Callable[[WebDriver, str], Path]
) -> None:
    """Both runs, the hostile run id shown as text (no element, no script run); live updates."""
    row = f'#runs-table tr[data-run-id="{RUN}"]'
    _until(browser, "the run in the run list", lambda d: _css(d, row))
    hostile = _until(
        browser,
        "the run with markup in its id",
        lambda d: [
            r for r in _css(d, "#runs-table tr") if r.get_attribute("data-run-id") == XSS_RUN
        ],
    )[0]
    assert hostile.find_element("css selector", ".run-link").text == XSS_RUN
    assert not _css(browser, "#runs-table img")
    assert browser.execute_script("return window.__xss === undefined")
    assert "0 / 3" in browser.find_element("css selector", f"{row} .bar-text").text
    _until(browser, "the live stream", lambda d: _css(d, '#live[data-state="live"]'))

    # A run created now appears without a reload; the filter narrows the list.
    browser.execute_script("window.__page = 'same page'")
    client.post("/v1/runs/late-run/checkpoints/0", json={"total_batches": 1}).raise_for_status()
    _until(
        browser, "the new run, live", lambda d: _css(d, '#runs-table tr[data-run-id="late-run"]')
    )
    shots(browser, "01-run-list")
    browser.find_element("css selector", "#run-filter").send_keys("late")
    _until(browser, "the filtered list", lambda d: len(_css(d, "#runs-table tbody tr")) == 1)
    browser.find_element("css selector", '[data-filter="failed"]').click()
    _until(browser, "no failed run", lambda d: _css(d, "#runs-empty"))
    browser.find_element("css selector", '[data-filter="all"]').click()
    browser.find_element("css selector", "#run-filter").clear()
    browser.find_element("css selector", "#run-filter").send_keys(RUN)
    link = _until(browser, "the run's link", lambda d: _css(d, f"{row} .run-link"))[0]
    link.click()


def _live_run_page(
    client: httpx.Client, browser: WebDriver, shots: Callable[[WebDriver, str], Path]
) -> list[str]:
    """The run page: a lane per batch; a worker yields while the page is open."""
    _until(browser, "three lanes", lambda d: len(_css(d, "#lanes g.lane")) == 3)
    _until(browser, "the run stream", lambda d: _css(d, '#live[data-state="live"]'))
    assert browser.execute_script("return window.__page") == "same page"
    moments: list[str] = []
    step = threading.Event()

    def worker() -> None:
        lease = _post(client, "0/claim", {"owner": "worker-1:4242", "ttl": 30})
        for n in range(1, 6):
            moments.append(
                _post(
                    client, "0/yield", {"cursor": n * 20, "items_processed": n * 20, "lease": lease}
                )["updated_at"]
            )
            if n == 3:
                step.wait(WAIT)
        _post(client, "0/complete", {"result": {"rows": 100}, "lease": lease})

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        _until(browser, "three yields of batch 0", lambda d: _lane_has(d, 0, 3, "60 / 100"))
        assert _css(browser, '#pending tr[data-key="0"]')
        assert "worker-1:4242" in _text(browser, "#pending")
        shots(browser, "02-run-page-live")
        step.set()
        _until(browser, "batch 0 completed", lambda d: _lanes(d)["0"]["status"] == "completed")
    finally:
        step.set()
        thread.join(WAIT)
    assert _lane_has(browser, 0, 5, "100 / 100")
    assert "ev-complete" in _lanes(browser)["0"]["marks"]
    _until(browser, "1 / 3 batches", lambda d: "1 / 3" in _text(d, "#stat-batches"))
    assert browser.execute_script("return window.__page") == "same page"
    return moments


def _failures(
    client: httpx.Client, browser: WebDriver, shots: Callable[[WebDriver, str], Path]
) -> None:
    """A transient failure and a permanent one (with markup in its message) appear live."""
    lease = _post(client, "1/claim", {"owner": "worker-2:7", "ttl": 30})
    _post(client, "1/yield", {"cursor": 30, "items_processed": 30, "lease": lease})
    _post(client, "1/fail", {"error": "disk <b>full</b>", "error_type": "OSError", "lease": lease})
    lease = _post(client, "2/claim", {"owner": "worker-3:8", "ttl": 30})
    _post(
        client,
        "2/fail",
        {"error": "timeout", "error_type": "TimeoutError", "transient": True, "lease": lease},
    )
    permanent = "#failures tr.is-permanent"
    _until(browser, "the permanent failure", lambda d: _css(d, permanent))
    assert "disk <b>full</b>" in _text(browser, permanent)
    assert not _css(browser, "#failures b")
    _until(browser, "the transient failure", lambda d: _css(d, "#failures tr.is-transient"))
    _until(browser, "the failure marks", lambda d: "ev-failed-permanent" in _lanes(d)["1"]["marks"])
    lanes = _lanes(browser)
    assert lanes["1"]["status"] == "failed"
    assert "ev-failed-transient" in lanes["2"]["marks"]
    _until(browser, "the run failed", lambda d: _css(d, ".title-row .b-failed"))
    shots(browser, "03-run-page-failure")


def _time_travel(
    client: httpx.Client,
    browser: WebDriver,
    shots: Callable[[WebDriver, str], Path],
    moments: list[str],
) -> None:
    """Between the 2nd and 3rd yield, batch 0 had 40 items and nothing had failed."""
    first, second = (datetime.fromisoformat(moments[i]) for i in (1, 2))
    between = (first + (second - first) / 2).isoformat()
    box = browser.find_element("css selector", "#asof-input")
    box.clear()
    box.send_keys(between + "\n")
    _until(browser, "the as-of banner", lambda d: _css(d, "#asof-banner"))
    _until(browser, "batch 0 as it was", lambda d: _lane_has(d, 0, 2, "40 / 100"))
    assert _lanes(browser)["0"]["status"] == "open"
    assert _css(browser, '#live[data-state="paused"]')
    assert "No failures." in _text(browser, "#failures")
    assert _css(browser, "#lanes line.cut")
    assert "as_of=" in browser.current_url
    # Paused: a new event does not change the past view.
    _post(client, "2/retry")
    shots(browser, "04-run-page-as-of")
    assert "No failures." in _text(browser, "#failures")

    # Back to live: the retry that happened meanwhile is there.
    browser.find_element("css selector", "#asof-live").click()
    _until(browser, "live again", lambda d: not _css(d, "#asof-banner"))
    _until(browser, "the retry mark", lambda d: "ev-retry" in _lanes(d)["2"]["marks"])
    assert _lane_has(browser, 0, 5, "100 / 100")
    assert _css(browser, "#failures tr.is-permanent")
