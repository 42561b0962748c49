"""The published site in a real browser: build the committed docs, serve them on localhost, load
the leaderboard in Debian's headless Chromium, and check what a reader would see."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT
from peftbench.docgen.leaderboard_pages import split_tables
from peftbench.leaderboard import Leaderboard
from peftbench.records import read_records

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = ROOT / "build" / "site-screenshot.png"  # build/ is git-ignored


def _need_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs them)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The committed docs built exactly as CI builds them (strict: a warning fails)."""
    out = tmp_path_factory.mktemp("site")
    command = ["mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    built = subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(site):
    """The built site on 127.0.0.1, a free port, for the module's tests."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,2400", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _images_loaded(driver) -> list[str]:
    """Sources of the page's images that did not load (naturalWidth 0), once loading settled."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
    )
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src)"
    )


def _table_methods(driver) -> list[str]:
    """The method column of the page's first leaderboard table, in display order."""
    return driver.execute_script(
        "const t = document.querySelector('table.pb-sortable');"
        "const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.trim() === 'method');"
        "return Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent.trim());"
    )


def test_leaderboard_pages_show_every_method_and_every_plot(server, browser):
    tables = split_tables(Leaderboard(read_records(ROOT / "leaderboard" / "records")))
    assert tables, "leaderboard/records holds no records to publish"

    browser.get(f"{server}/leaderboard/")
    assert "Leaderboard" in browser.title
    assert _images_loaded(browser) == []
    index_text = browser.find_element("tag name", "article").text
    for table in tables:
        for method in table.frame["label"]:
            assert method in index_text, f"{method} missing from the leaderboard index"

    for table in tables:
        browser.get(f"{server}/leaderboard/{table.slug}/")
        expected = list(table.frame["label"])
        assert _table_methods(browser) == expected
        images = browser.execute_script("return document.images.length")
        assert images >= 3 and _images_loaded(browser) == [], f"plots did not load on {table.slug}"
        body = browser.find_element("tag name", "article").text
        for fact in ("Hardware", "Packages", "Date", table.model, table.dataset):
            assert fact in body

    first = tables[0]
    browser.get(f"{server}/leaderboard/{first.slug}/")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    print(f"screenshot of {first.title}: {SCREENSHOT}")


def test_results_table_sorts_by_a_clicked_column(server, browser):
    tables = split_tables(Leaderboard(read_records(ROOT / "leaderboard" / "records")))
    browser.get(f"{server}/leaderboard/{tables[0].slug}/")
    header = browser.find_element("xpath", "(//table[contains(@class,'pb-sortable')])[1]//th[.='method']")
    header.click()
    assert _table_methods(browser) == sorted(tables[0].frame["label"])
    header.click()
    assert _table_methods(browser) == sorted(tables[0].frame["label"], reverse=True)
