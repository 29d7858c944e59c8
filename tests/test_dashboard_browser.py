"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which `.ci/run` installs) through selenium, against the server run by
uvicorn on a loopback port over a test store. It signs in, checks that the decision table,
the equity chart and the comparison render with no console errors, and saves a screenshot
under the test's tmp dir."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="no headless Chromium here: install Debian's chromium and chromium-driver "
        "(.ci/run does) to run the browser test",
    ),
]


@pytest.fixture(scope="module")
def server(serve_world):
    import uvicorn

    from synthpm.data.store import Store
    from synthpm.serve.api import create_app
    from synthpm.serve.config import ServeConfig
    from synthpm.serve.service import Service

    world = serve_world
    config = ServeConfig(model=world.model, forecasts=world.forecasts, runs=world.runs)
    service = Service(Store(world.store_path), config)
    for k in (-3, -2):  # two decided weeks in a paper account: decisions and a book to show
        service.decide(world.fridays[k], account="browser", book=None, mode="full")
    app = create_app(service)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", world
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as Driver

    options = Options()
    options.binary_location = CHROMIUM
    # a closed network: no background connections, no first-run pages, no sandbox as root
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--window-size=1280,2000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Driver(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_dashboard_renders_in_chromium(server, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url, world = server
    browser.get(url + "/")
    assert browser.current_url.endswith("/login")
    # the page opens on the browser account's book (other tests' accounts may exist too)
    browser.find_element(By.ID, "token").send_keys(world.token)
    browser.find_element(By.ID, "enter").click()
    browser.get(url + "/?account=browser")
    wait = WebDriverWait(browser, 20)
    wait.until(ready.presence_of_element_located((By.ID, "decisions")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
    assert len(rows) >= 12  # two review days of six names, and other tests' decisions
    assert "T0" in browser.find_element(By.ID, "decisions").text
    # plotly drew the equity chart: its SVG layers and both traces' lines exist
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#equity .main-svg")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#equity .scatterlayer .trace")) == 3
    comparison = browser.find_element(By.ID, "comparison").text
    assert "always_buy" in comparison and "equal_weight" in comparison
    book = browser.find_element(By.ID, "book").find_element(By.XPATH, "..").text
    assert f"browser at the close of {world.fridays[-2].date()}" in book
    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    print(f"screenshot: {shot}")
