"""The display page (web/) in Debian's headless Chromium, driven by playwright, against a real
mosquitto websocket listener, the agent as a real process and the providers' simulators.

Playwright never downloads a browser here: it launches /usr/bin/chromium (scripts/system-deps.sh
installs it). Each flow's screenshot is kept in build/screenshots/ for people to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, async_playwright, expect

from agent.display import page_problem, page_url, serve_page
from tests.conftest import REPO, WAIT, AgentProcess, Broker, free_port
from tests.integration.test_lane_agent import BASE

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "build" / "screenshots"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Playwright's waits are in milliseconds; the agent's provider calls are bounded well below this.
EXPECT_MS = WAIT * 1000
expect.set_options(timeout=EXPECT_MS)

PageOpener = Callable[..., Awaitable[Page]]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed: run 'make test' as root, or "
            "'sudo apt-get install --no-install-recommends chromium'"
        )
    return found


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The tests' mosquitto with a websocket listener too: the page's way in."""
    b = Broker(tmp_path, ws_port=free_port())
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def page_server() -> Iterator[str]:
    problem = page_problem()
    if problem is not None:
        pytest.fail(problem)
    with serve_page() as url:
        yield url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def open_page(
    browser: Browser, broker: Broker, page_server: str
) -> AsyncIterator[PageOpener]:
    """`await open_page(agent)`: start the agent (unless it runs already) and open the display
    page on its lane, once the page shows the agent online. `open_page(None)`: open the page
    with no agent started, once it is connected to the broker. `before_load(page)` runs before
    the page is loaded (to route its websocket). A script error on any page fails the test."""
    errors: list[str] = []

    async def open_(
        agent: AgentProcess | None,
        *,
        width: int = 1100,
        height: int = 900,
        init_script: Path | None = None,
        before_load: Callable[[Page], Awaitable[None]] | None = None,
    ) -> Page:
        if agent is not None and agent.process is None:
            agent.start()
        context = await browser.new_context(
            locale="en-US", viewport={"width": width, "height": height}
        )
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        if init_script is not None:
            await page.add_init_script(path=init_script)
        if before_load is not None:
            await before_load(page)
        ws = f"ws://127.0.0.1:{broker.ws_port}/"
        await page.goto(page_url(page_server, ws=ws, base=BASE))
        if agent is None:
            await expect(page.locator("#connection")).to_have_text("Broker: connected")
        else:
            await expect(page.locator("#agent-state")).to_have_text(re.compile(r"^Agent: online"))
        return page

    yield open_
    assert errors == [], f"script errors on the page: {errors}"


class Cable:
    """The page's websocket to the broker, routed through playwright: `cut()` drops it and turns
    the page's reconnects away, `mend()` lets the next one through. The broker and the agent
    stay up, so what they publish meanwhile never reaches the page. `cut_at(topic)` cuts it
    when the broker next sends the page a message on `topic`, which is lost with it."""

    def __init__(self) -> None:
        self.cut_off = False
        self.open: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.trip: bytes | None = None
        self.lost: list[bytes] = []

    async def attach(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"^wss?://"), self._route)

    def cut_at(self, topic: str) -> None:
        self.trip = topic.encode()

    async def _route(self, page_side: WebSocketRoute) -> None:
        if self.cut_off:
            await page_side.close(code=1001, reason="cable cut")
            return
        broker_side = page_side.connect_to_server()

        async def from_broker(message: str | bytes) -> None:
            data = message.encode() if isinstance(message, str) else message
            if self.trip is not None and self.trip in data:
                self.trip = None
                self.lost.append(data)
                await self.cut()
                return
            page_side.send(message)

        broker_side.on_message(from_broker)
        self.open.append((page_side, broker_side))

    async def cut(self) -> None:
        self.cut_off = True
        for page_side, broker_side in self.open:
            await page_side.close(code=1001, reason="cable cut")
            await broker_side.close()
        self.open.clear()

    def mend(self) -> None:
        self.cut_off = False


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as build/screenshots/{name}.png and check it is a PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, f"{path} is not a screenshot"
    return path


async def scan(page: Page, code: str) -> None:
    """Key a code into the scan field and press Enter, as a cashier (or a wedge scanner) does."""
    field = page.locator("#scan-input")
    await field.focus()
    await field.fill(code)
    await field.press("Enter")
    await expect(field).to_have_value("")


async def enter_order(page: Page, order_id: str, lines: str, tax: str = "0") -> None:
    """Send an order from the page's order form ("name; amount; product code" lines)."""
    form = page.locator("#order-entry")
    if await form.get_attribute("open") is None:
        await page.get_by_text("Enter an order").click()
    await page.get_by_label("Order id").fill(order_id)
    await page.get_by_label("Lines").fill(lines)
    await page.get_by_label("Tax").fill(tax)
    await page.get_by_role("button", name="Send order").click()
    await expect(page.locator("#order-status")).to_contain_text(f"Order {order_id}: ")
