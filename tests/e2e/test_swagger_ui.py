"""`/api-docs` (Swagger UI) and `/api-docs/redoc` in a real browser: Debian's headless Chromium
(`make browser` installs it) driven by Playwright, against a real `mysoulmate serve`.

Checked as a person would use the pages: every operation of `/api-docs.json` is on the page,
nothing is loaded from anywhere but the server itself, a try-it-out call authorized with a
bearer token answers 2xx, and the token survives a reload. `UPDATE_SCREENSHOTS=1` also writes
docs/images/swagger-ui.png and docs/images/redoc.png (the README shows the first).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.support.helpers import make_token, require_service
from tests.support.server import ROOT, ServerProcess, mysoulmate_serve

pytestmark = pytest.mark.slow

# Debian's build, never a browser Playwright downloads (`playwright install` is not used).
CHROMIUM = Path("/usr/bin/chromium")
# As root Chromium only starts without its sandbox; no GPU; no background calls to Google.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 1600}
IMAGES = ROOT / "docs" / "images"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
UI_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        require_service(f"{CHROMIUM} is missing (Debian's chromium: `make browser`)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def server(isolated_env: Path) -> Iterator[ServerProcess]:
    process = mysoulmate_serve(isolated_env, WORKER_ENABLED="true").start()
    yield process
    process.stop()


class Visit:
    """A browser context on the server that records every request URL its pages make (workers
    included), console errors (CSP violations among them) and uncaught exceptions."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.base_url = base_url
        self.context: BrowserContext = browser.new_context(viewport=VIEWPORT)
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        # An error status of a try-it-out call is the API's answer, checked where it is made.
        answered = message.text.startswith("Failed to load resource: the server responded")
        if message.type == "error" and not answered:
            self.problems.append(f"console: {message.text}")

    def outside_requests(self) -> list[str]:
        """Every request URL not answered by the server itself (blob: and data: URLs of the
        page's own origin never leave the browser)."""
        local = (f"{self.base_url}/", f"blob:{self.base_url}/", "data:")
        return [url for url in self.requests if not url.startswith(local)]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Browser, server: ServerProcess) -> Iterator[Visit]:
    session = Visit(browser, server.url)
    yield session
    session.close()


def spec_operations(base_url: str) -> set[tuple[str, str, str, str]]:
    """The operations of the served spec: (tag, operationId, METHOD, path), one per tag."""
    spec = httpx.get(f"{base_url}/api-docs.json", timeout=10).raise_for_status().json()
    operations = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
            for tag in operation.get("tags") or ["default"]:
                operations.add((tag, operation["operationId"], method.upper(), path))
    return operations


def wait_for_count(base_url: str, user: str, token: str, expected: int) -> None:
    """Until the worker has stored ``expected`` events of ``user`` (read back over HTTP)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{base_url}/api/v1/analytics/user/{user}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code == 200 and len(response.json()["events"]) >= expected:
            return
        time.sleep(0.1)
    pytest.fail(f"{expected} events of {user} were not readable within 15 s")


# -- Swagger UI -------------------------------------------------------------------------------


def open_swagger_ui(visit: Visit) -> Page:
    page = visit.page
    page.goto(f"{visit.base_url}/api-docs")
    page.wait_for_selector("#swagger-ui .opblock")
    return page


def rendered_operations(page: Page) -> dict[str, tuple[str, str]]:
    rows = page.eval_on_selector_all(
        "#swagger-ui .opblock",
        """blocks => blocks.map(block => [
             block.id,
             block.querySelector('.opblock-summary-method').textContent.trim(),
             block.querySelector('.opblock-summary-path').getAttribute('data-path'),
           ])""",
    )
    return {element_id: (method, path) for element_id, method, path in rows}


def expand(operation: Locator) -> None:
    """Open an operation (unless deep linking already opened it after a reload)."""
    if "is-open" not in (operation.get_attribute("class") or ""):
        operation.locator(".opblock-summary-control").click()
    expect(operation).to_have_class(re.compile(r"\bis-open\b"))


def try_it_out(operation: Locator, **parameters: str) -> None:
    expand(operation)
    operation.locator("button.try-out__btn").click()
    for name, value in parameters.items():
        operation.locator(f'tr[data-param-name="{name}"] input').fill(value)


def execute(operation: Locator) -> tuple[int, Locator]:
    """Click Execute; the status code of the rendered live response, and that response's row."""
    live = operation.locator(".live-responses-table")
    if live.count():  # a second call: wait for Swagger UI to replace the first answer
        operation.locator("button.btn-clear").click()
        expect(live).to_have_count(0)
    operation.locator("button.execute").click()
    row = live.locator("tbody tr.response").first
    status = row.locator("td.response-col_status")
    expect(status).to_have_text(re.compile(r"^\s*\d{3}\s*$"))
    return int(status.inner_text().strip()), row


def authorize(page: Page, token: str) -> None:
    """The Authorize dialog: paste the token into the bearerAuth scheme, Authorize, Close."""
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    scheme = dialog.locator(".auth-container").filter(has_text="bearerAuth")
    expect(scheme).to_have_count(1)
    scheme.locator("input").fill(token)
    scheme.locator("button.authorize").click()
    # The dialog now says so and offers Logout instead of the input.
    expect(scheme.locator("h6")).to_have_text("Authorized")
    expect(scheme.get_by_role("button", name="Remove authorization")).to_be_visible()
    scheme.locator("button.btn-done").click()  # each scheme (bearerAuth, writeKey) has one
    expect(dialog).to_have_count(0)


def test_swagger_ui_renders_every_operation_of_the_spec_from_the_server_only(
    visit: Visit,
) -> None:
    operations = spec_operations(visit.base_url)
    # The docs routes are hidden from the spec; the API itself is all there.
    assert not [path for *_, path in operations if path.startswith("/api-docs")]
    assert {("analytics", "track"), ("analytics", "user_analytics")} <= {
        (tag, operation_id) for tag, operation_id, *_ in operations
    }
    # Swagger UI's element of an operation: `operations-<tag>-<operationId>`.
    expected = {
        f"operations-{tag}-{operation_id}": (method, path)
        for tag, operation_id, method, path in operations
    }

    page = open_swagger_ui(visit)

    assert rendered_operations(page) == expected
    assert page.locator(".info .title").inner_text().startswith("MySoulmate")
    assert visit.outside_requests() == []
    assert f"{visit.base_url}/api-docs.json" in visit.requests
    assert visit.problems == []


def test_try_it_out_with_a_bearer_token_kept_across_a_reload(visit: Visit) -> None:
    user = "docs-reader"
    token = make_token(user)
    tracked = httpx.post(
        f"{visit.base_url}/api/v1/analytics/track",
        json={"event": "docs_opened", "properties": {"page": "swagger-ui"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert tracked.status_code == 202, tracked.text
    wait_for_count(visit.base_url, user, token, 1)

    page = open_swagger_ui(visit)
    read = page.locator("#operations-analytics-user_analytics")
    try_it_out(read, userId=user)

    # Not authorized yet: the API turns the call down.
    status, _ = execute(read)
    assert status == 401

    authorize(page, token)
    expect(page.locator(".auth-wrapper button.authorize")).to_have_class(re.compile(r"\blocked\b"))
    status, response = execute(read)
    assert status == 200
    expect(response.locator(".response-col_description")).to_contain_text("docs_opened")
    curl = read.locator(".curl-command")
    expect(curl).to_contain_text(f"Authorization: Bearer {token}")
    expect(curl).to_contain_text(f"{visit.base_url}/api/v1/analytics/user/{user}")

    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        save_swagger_ui_screenshot(page)

    # persistAuthorization: after a reload the token is still there, and still used.
    page.reload()
    page.wait_for_selector("#swagger-ui .opblock")
    expect(page.locator(".auth-wrapper button.authorize")).to_have_class(re.compile(r"\blocked\b"))
    read = page.locator("#operations-analytics-user_analytics")
    try_it_out(read, userId=user)
    status, response = execute(read)
    assert status == 200
    expect(response.locator(".response-col_description")).to_contain_text("docs_opened")

    assert visit.outside_requests() == []
    assert visit.problems == []


def save_swagger_ui_screenshot(page: Page) -> None:
    """The analytics operations, authorized, with a request body and a live answer shown."""
    track = page.locator("#operations-analytics-track")
    expand(track)
    expect(track.locator(".opblock-section-request-body")).to_be_visible()
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "swagger-ui.png"))


# -- ReDoc ------------------------------------------------------------------------------------


def test_redoc_renders_every_operation_from_the_server_only(visit: Visit) -> None:
    # ReDoc's section of an operation: `tag/<tag>/operation/<operationId>`.
    expected = {
        f"tag/{tag}/operation/{operation_id}"
        for tag, operation_id, *_ in spec_operations(visit.base_url)
    }

    page = visit.page
    page.goto(f"{visit.base_url}/api-docs/redoc")
    page.wait_for_selector('[data-section-id*="/operation/"]')

    rendered = set(
        page.eval_on_selector_all(
            '[data-section-id^="tag/"][data-section-id*="/operation/"]',
            "sections => sections.map(section => section.getAttribute('data-section-id'))",
        )
    )
    assert rendered == expected
    expect(page.locator("h1").first).to_contain_text("MySoulmate")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / "redoc.png"))

    assert visit.outside_requests() == []
    assert visit.problems == []
