"""The search page in a real browser: headless Chromium (Debian's package) driven by selenium.

Kept out of the default suite (marker ``browser``); `make test-browser` installs Chromium when missing and
runs it, and `.ci/run` calls that target. The screenshot lands in runs/serve-page.png.
"""

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from moon_cli.serve.app import create_app
from moon_cli.serve.engine import SearchEngine

from conftest import REPO

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1280,900")


@pytest.fixture(scope="module")
def server(catalog_index):
    import uvicorn

    d, _ = catalog_index
    app = create_app(SearchEngine(d / "idx", "tiny", memory="auto"))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(400):
        if srv.started:
            break
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("Chromium and ChromeDriver are needed: `make test-browser` installs them "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def rendered_images(driver) -> list[int]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#results .card img')].map(i => i.complete ? i.naturalWidth : 0)")


def test_the_page_searches_and_shows_result_photos(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(server)
    wait.until(lambda d: "products" in d.find_element(By.ID, "info").text)  # /info answered
    categories = Select(browser.find_element(By.ID, "category"))
    assert len(categories.options) > 1  # the filters were read from the index

    browser.find_element(By.ID, "q").send_keys("red striped shirt")
    browser.find_element(By.ID, "search").click()
    wait.until(lambda d: len(rendered_images(d)) > 0 and all(w > 0 for w in rendered_images(d)))
    widths = rendered_images(browser)
    assert len(widths) == 24 and min(widths) > 0  # the default k, every photo decoded
    assert "results for “red striped shirt”" in browser.find_element(By.ID, "status").text

    out = REPO / "runs"
    out.mkdir(exist_ok=True)
    browser.save_screenshot(str(out / "serve-page.png"))
    assert (out / "serve-page.png").stat().st_size > 10_000

    # a category filter: every card shows that category
    leaf = categories.options[1].text
    categories.select_by_visible_text(leaf)
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "(filtered)"))
    cats = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#results .cat")]
    assert cats and all(c.endswith(leaf) for c in cats)

    # clicking a result searches with that product
    title = browser.find_element(By.CSS_SELECTOR, "#results .card .title").text
    browser.find_element(By.CSS_SELECTOR, "#results .card").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), f"more like “{title}”"))
    wait.until(lambda d: len(rendered_images(d)) > 0 and all(w > 0 for w in rendered_images(d)))
    assert Path(out / "serve-page.png").exists()


def test_the_address_holds_the_search_and_the_back_button_returns_to_it(server, browser):
    from urllib.parse import parse_qs, urlparse

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(f"{server}/?q=blue%20mug&k=12")  # a shared link searches on arrival
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "results for “blue mug”"))
    assert len(rendered_images(browser)) == 12
    assert browser.find_element(By.ID, "q").get_attribute("value") == "blue mug"

    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("green tee")
    browser.find_element(By.ID, "search").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "results for “green tee”"))
    assert parse_qs(urlparse(browser.current_url).query) == {"q": ["green tee"], "k": ["12"]}

    browser.back()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "results for “blue mug”"))
    assert browser.find_element(By.ID, "q").get_attribute("value") == "blue mug"


@pytest.fixture(scope="module")
def folder_server(world_template, tmp_path_factory):
    """`moon embed FOLDER` on photos in nested folders (ids like "tops/p000001_0.jpg"), indexed and served."""
    import uvicorn

    from conftest import run_moon

    d = tmp_path_factory.mktemp("folder")
    photos = sorted((world_template / "images").glob("*.jpg"))[:30]
    for n, photo in enumerate(photos):
        sub = d / "photos" / ("tops" if n % 2 else "home/kitchen")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / photo.name)
    assert run_moon("embed", d / "photos", "-m", "tiny", "-o", d / "e.parquet", "--quiet").exit_code == 0
    assert run_moon("index", d / "e.parquet", "-o", d / "idx").exit_code == 0
    srv = uvicorn.Server(uvicorn.Config(create_app(SearchEngine(d / "idx", "tiny")), host="127.0.0.1", port=0,
                                        log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(400):
        if srv.started:
            break
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_a_folder_index_with_nested_folders_shows_its_photos(folder_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(f"{folder_server}/?q=red")
    wait.until(lambda d: len(rendered_images(d)) > 0 and all(w > 0 for w in rendered_images(d)))
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#results .card .title")]
    assert len(titles) == 24 and all("/" in t for t in titles)  # the ids are the photos' relative paths
    browser.find_element(By.CSS_SELECTOR, "#results .card").click()  # "more like this" on a nested id
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), f"more like “{titles[0]}”"))
    wait.until(lambda d: len(rendered_images(d)) > 0 and all(w > 0 for w in rendered_images(d)))
