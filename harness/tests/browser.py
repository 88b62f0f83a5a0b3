"""Open a page in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

``open_page(path)`` returns ``(driver, console_errors, network_urls)`` readers; callers quit the
driver. ``browser_missing()`` says why no browser can be used here ("" when one can).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)


def _which(names: tuple[str, ...]) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def browser_missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    if _which(CHROMIUM_NAMES) is None:
        return "no chromium binary on PATH (.ci/run installs Debian's chromium)"
    if _which(DRIVER_NAMES) is None:
        return "no chromedriver on PATH (.ci/run installs Debian's chromium-driver)"
    return ""


def start_browser(width: int = 1280, height: int = 2000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _which(CHROMIUM_NAMES)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(_which(DRIVER_NAMES)), options=opts)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def network_requests(driver) -> list[str]:
    """URLs the page asked for (from Chromium's performance log), other than itself and data:."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if not url.startswith(("data:", "file:")):
                urls.append(url)
    return urls


def screenshot(driver, path: Path) -> Path:
    path = Path(path)
    driver.save_screenshot(str(path))
    return path
