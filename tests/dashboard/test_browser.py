"""The dashboard in a real browser: Debian's headless Chromium driven by selenium.

One test per page. Each serves the app over a store of known data on a free 127.0.0.1 port,
waits for the page's data to arrive, and saves a screenshot under test-artifacts/dashboard/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.app import DashboardServer, create_app
from dashboard.frames import alert_path, key_path
from finsentry.config import Settings, load_settings
from finsentry.store import Store
from tests.dashboard.known_data import MD_TITLE, TSLA_ALERT, WINDOWS, XSS_TITLE

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("FINSENTRY_TEST_ARTIFACTS", "test-artifacts")) / "dashboard"
WAIT_S = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def serve(store: Store, settings: Settings) -> Iterator[Callable[..., str]]:
    """Start the app (with optional setting overrides); returns its base URL."""
    servers: list[DashboardServer] = []

    def start(**overrides: Any) -> str:
        merged = load_settings(**{**settings.model_dump(), **overrides})
        server = DashboardServer(create_app(store, merged)).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


def shot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any]) -> Any:
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(
        condition
    )


def trace_points(driver: WebDriver, graph_id: str, trace: int) -> int | None:
    return driver.execute_script(
        "const g = document.querySelector(`#${arguments[0]} .js-plotly-plot`);"
        "return g && g.data && g.data.length > arguments[1] ? g.data[arguments[1]].x.length"
        " : null;",
        graph_id,
        trace,
    )


def text_of(driver: WebDriver, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def pick(driver: WebDriver, dropdown_id: str, value: str) -> None:
    """Choose an option of a dcc.Dropdown as a user would: open, search, click it."""
    driver.find_element(By.ID, dropdown_id).click()
    popup = wait_for(
        driver, lambda d: d.find_element(By.ID, dropdown_id).get_attribute("aria-controls")
    )
    driver.switch_to.active_element.send_keys(value)
    option = wait_for(
        driver,
        lambda d: d.find_element(
            By.XPATH, f"//*[@id='{popup}']//*[@role='option' and normalize-space(.)='{value}']"
        ),
    )
    option.click()
    wait_for(driver, lambda d: text_of(d, f"{dropdown_id}-value") == value)


def show_last_day(driver: WebDriver) -> None:
    """The overview opens on "Recent data" (issue 20); the tests that count the known windows
    on its charts switch to "Last day", the range they were written for."""
    recent = "#range input[value='recent']"
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, recent).is_selected())
    driver.find_element(By.XPATH, "//label[contains(., 'Last day')]").click()


def test_overview_renders_filters_and_refreshes(browser, serve):
    url = serve(dashboard_refresh_s=1)
    browser.get(url + "/")
    show_last_day(browser)
    wait_for(browser, lambda d: trace_points(d, "market-graph", 1) == WINDOWS)
    assert wait_for(browser, lambda d: "ticker:TSLA" in text_of(d, "alert-feed-table"))
    assert trace_points(browser, "heatmap", 0) == WINDOWS
    shot(browser, "overview")

    browser.find_element(By.XPATH, "//label[contains(., 'Last week')]").click()
    week_points = 1 + WINDOWS // 3  # a week is drawn in 15-minute buckets
    wait_for(browser, lambda d: trace_points(d, "market-graph", 1) == week_points)
    shot(browser, "overview-week")

    # The one-second refresh re-queries; the analyst's choice must survive it.
    before = text_of(browser, "range-label")
    wait_for(browser, lambda d: text_of(d, "range-label") not in ("", before))
    selected = browser.find_element(By.CSS_SELECTOR, "#range input[value='week']")
    assert selected.is_selected()
    assert trace_points(browser, "market-graph", 1) == week_points


def test_drill_down_opens_from_a_heatmap_click(browser, serve):
    browser.get(serve() + "/")
    show_last_day(browser)
    wait_for(browser, lambda d: trace_points(d, "heatmap", 0) == WINDOWS)
    browser.execute_script("document.getElementById('heatmap').scrollIntoView({block: 'center'})")
    drag: WebElement = browser.find_element(By.CSS_SELECTOR, "#heatmap .nsewdrag")
    height = drag.size["height"]
    # Rows top to bottom are TSLA, AAPL, MSFT; aim at the middle of the top row.
    ActionChains(browser).move_to_element_with_offset(drag, 0, -height // 3).pause(
        0.3
    ).click().perform()
    wait_for(browser, lambda d: d.current_url.endswith(key_path("ticker:TSLA")))
    assert wait_for(browser, lambda d: text_of(d, "key-title") == "ticker:TSLA")
    assert wait_for(browser, lambda d: "page 1 of 3 (25 posts)" in text_of(d, "page-label"))
    wait_for(browser, lambda d: trace_points(d, "key-graph", 3) == WINDOWS)
    assert "critical" in text_of(browser, "key-alerts-table")
    shot(browser, "drill-down")


def test_key_link_from_an_alert_message_selects_its_days(browser, serve):
    """The alert messages link to /key/<key>?start=..&end=.. around the alert's window."""
    query = "start=2026-01-05T10:40:00%2B00:00&end=2026-01-05T10:45:00%2B00:00"
    browser.get(serve() + "/key/ticker:TSLA?" + query)
    assert wait_for(browser, lambda d: text_of(d, "key-title") == "ticker:TSLA")
    wait_for(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, "#range input[value='custom']").is_selected(),
    )
    assert wait_for(
        browser,
        lambda d: text_of(d, "range-label").startswith("2026-01-05 00:00 to 2026-01-06 00:00 UTC"),
    )
    assert wait_for(browser, lambda d: "(25 posts)" in text_of(d, "page-label"))
    shot(browser, "key-deep-link")


def test_key_page_filters_pages_and_stores_feedback(browser, serve, store):
    browser.get(serve() + key_path("ticker:TSLA"))
    wait_for(browser, lambda d: "(25 posts)" in text_of(d, "page-label"))
    pick(browser, "f-sentiment", "negative")
    wait_for(browser, lambda d: "(12 posts)" in text_of(d, "page-label"))
    browser.find_element(By.ID, "next-page").click()
    wait_for(browser, lambda d: text_of(d, "page-label") == "page 2 of 2 (12 posts)")

    row = browser.find_element(By.XPATH, "//table[@id='posts']/tbody/tr[1]")
    title = row.find_elements(By.TAG_NAME, "td")[2].text
    post = store_id_for_title(store, title)
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "fb-post").get_attribute("value") == post)
    pick(browser, "fb-label", "positive")
    browser.find_element(By.ID, "fb-user").send_keys("alice")
    browser.find_element(By.ID, "fb-submit").click()
    assert wait_for(browser, lambda d: "Saved correction #1" in text_of(d, "fb-result"))
    shot(browser, "key-feedback")
    (saved,) = store.feedback_labels()
    assert (saved["post_id"], saved["old_label"], saved["new_label"], saved["user"]) == (
        post,
        "negative",
        "positive",
        "alice",
    )


def score_column(driver: WebDriver) -> list[float]:
    cells = driver.find_elements(By.XPATH, "//table[@id='posts']/tbody/tr/td[5]")
    return [float(cell.text) for cell in cells]


def test_clicking_a_header_sorts_the_posts(browser, serve):
    browser.get(serve() + key_path("ticker:TSLA"))
    wait_for(browser, lambda d: "(25 posts)" in text_of(d, "page-label"))
    header = "//table[@id='posts']//th/button[starts-with(., 'score')]"
    browser.find_element(By.XPATH, header).click()
    wait_for(browser, lambda d: d.find_element(By.XPATH, header).text == "score ▼")
    assert score_column(browser) == sorted(score_column(browser), reverse=True)
    assert score_column(browser)[0] == 0.75
    browser.find_element(By.XPATH, header).click()
    wait_for(browser, lambda d: d.find_element(By.XPATH, header).text == "score ▲")
    assert score_column(browser) == sorted(score_column(browser))
    assert text_of(browser, "page-label") == "page 1 of 3 (25 posts)"
    shot(browser, "key-sorted-by-score")


def store_id_for_title(store: Store, title: str) -> str:
    number = int(title.rsplit(" ", 1)[-1]) if title.startswith("Tesla story") else 23
    post = store.get_post(f"post-{number}")
    assert post is not None and post["title"] == title
    return str(post["id"])


def test_untrusted_title_renders_as_text(browser, serve):
    browser.get(serve() + key_path("ticker:TSLA"))
    wait_for(browser, lambda d: "(25 posts)" in text_of(d, "page-label"))
    title_filter = browser.find_element(By.ID, "f-title")
    title_filter.send_keys("script", Keys.ENTER)
    wait_for(browser, lambda d: "(2 posts)" in text_of(d, "page-label"))
    links = browser.find_elements(By.XPATH, "//table[@id='posts']//a")
    assert [link.text for link in links] == [XSS_TITLE]
    assert links[0].find_elements(By.XPATH, ".//*") == []  # no <b>, no <script>: just text
    assert browser.execute_script("return window.__xss === undefined")
    # The markdown-looking title is shown literally, and its javascript: URL is not a link.
    assert MD_TITLE in text_of(browser, "posts")
    shot(browser, "xss-as-text")


def test_alert_deep_link_renders(browser, serve):
    browser.get(serve() + alert_path(TSLA_ALERT))
    assert wait_for(browser, lambda d: text_of(d, "alert-title") == "Alert on ticker:TSLA")
    facts = text_of(browser, "alert-facts")
    assert "z statistic 5.00" in facts and "baseline 0.10" in facts
    assert "2026-01-05 10:40:00 to 2026-01-05 10:45:00" in facts
    evidence = text_of(browser, "alert-evidence")
    assert XSS_TITLE in evidence and "Tesla story 19" in evidence
    assert browser.execute_script("return window.__xss === undefined")
    assert "delivered" in text_of(browser, "alert-deliveries")
    shot(browser, "alert")


def test_alert_evidence_feedback_reaches_the_store(browser, serve, store):
    browser.get(serve() + alert_path(TSLA_ALERT))
    row = wait_for(
        browser, lambda d: d.find_element(By.XPATH, "//table[@id='alert-evidence']/tbody/tr[2]")
    )
    assert "Tesla story 19" in row.text
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(
        browser, lambda d: d.find_element(By.ID, "fb-post").get_attribute("value") == "post-19"
    )
    pick(browser, "fb-field", "topic")
    pick(browser, "fb-label", "M&A | Investments")
    browser.find_element(By.ID, "fb-user").send_keys("bea")
    browser.find_element(By.ID, "fb-submit").click()
    assert wait_for(browser, lambda d: "Saved correction #1" in text_of(d, "fb-result"))
    shot(browser, "alert-feedback")
    (saved,) = store.feedback_labels()
    assert (saved["post_id"], saved["field"], saved["old_label"], saved["new_label"]) == (
        "post-19",
        "topic",
        "Earnings",
        "M&A | Investments",
    )


def test_model_panel_shows_the_current_version(browser, serve):
    browser.get(serve() + "/model")
    assert wait_for(browser, lambda d: text_of(d, "model-current") == "v2")
    assert "sentiment.macro_f1 0.8312" in text_of(browser, "model-metrics")
    assert "topic.accuracy 0.9000" in text_of(browser, "model-metrics")
    shot(browser, "model")
