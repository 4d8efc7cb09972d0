"""A real headless Chromium for end-to-end tests: the driver, its network log, screenshots.

Uses Debian's ``chromium`` and ``chromium-driver`` (infra/setup-debian.sh). Selenium blocks, while the
services under test run on the test's event loop, so browser work goes through :func:`browse`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

T = TypeVar("T")


def chromium(network_log: bool = False) -> webdriver.Chrome:
    """A headless Chromium (1400x1000, es-MX); with ``network_log`` it records every request and answer."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "Instale chromium y chromium-driver (infra/setup-debian.sh) / install chromium"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--lang=es-MX"):
        options.add_argument(argument)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


async def browse(action: Callable[[], T]) -> T:
    """Run blocking Selenium work in a thread, so the servers on this event loop keep answering."""
    return await asyncio.to_thread(action)


def artefacts_dir(default: Path) -> Path:
    """Where screenshots go: ``$MDD_TEST_ARTIFACTS``, else ``default`` (the test's tmp folder)."""
    folder = Path(os.environ.get("MDD_TEST_ARTIFACTS", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Exchange:
    """One HTTP request the page made and how it ended (``status`` None: no answer, see ``error``)."""

    method: str
    url: str
    kind: str
    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # what the page itself set on the request


class NetworkLog:
    """The requests a page made to one server (CORS preflights included), read from Chromium's network log.

    Needs a browser made with ``chromium(network_log=True)``. Each :meth:`read` adds what happened since
    the last one; a request that never got an answer (blocked by CORS, refused) keeps ``status`` None.
    """

    def __init__(self, browser: webdriver.Chrome, url_prefix: str) -> None:
        self.browser, self.url_prefix = browser, url_prefix
        self._by_id: dict[str, Exchange] = {}

    def read(self) -> list[Exchange]:
        """Every exchange seen so far, in the order the requests started."""
        for entry in self.browser.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params, method = message.get("params", {}), message.get("method")
            url = (params.get("request") or params.get("response") or {}).get("url", "")
            if method == "Network.requestWillBeSent" and url.startswith(self.url_prefix):
                request = params["request"]
                self._by_id[params["requestId"]] = Exchange(
                    request["method"], url, params.get("type", ""), headers=dict(request.get("headers", {}))
                )
            elif method == "Network.responseReceived" and url.startswith(self.url_prefix):
                self._answered(params)
            elif method == "Network.loadingFailed" and params["requestId"] in self._by_id:
                self._by_id[params["requestId"]].error = params.get("errorText") or "failed"
        return list(self._by_id.values())

    def _answered(self, params: dict) -> None:
        # A CORS preflight has a request id of its own, with its own request event.
        url, kind = params["response"]["url"], params.get("type", "")
        exchange = self._by_id.setdefault(params["requestId"], Exchange("?", url, kind))
        exchange.status = int(params["response"]["status"])

    def clear(self) -> None:
        """Forget what was read (the next page starts afresh)."""
        self.read()
        self._by_id.clear()
