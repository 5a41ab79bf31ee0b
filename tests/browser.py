"""Headless Chromium for the page tests: Debian's ``chromium`` and ``chromium-driver`` (scripts/system-deps.sh)
driven by Selenium, with a new empty profile in the test's temporary folder and no network of its own."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def chromium_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists() and shutil.which("chromedriver") is not None


needs_chromium = pytest.mark.skipif(not chromium_available(),
                                    reason="chromium + chromium-driver + selenium missing: make test installs them")


def start_chromium(profile: Path):
    """A Selenium driver of a fresh headless Chromium whose profile lives in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    driver = start_chromium(profile)
    yield driver
    driver.quit()


def wait_until(cond: Callable[[], object], *, timeout: float = 30.0, what: str = "condition") -> object:
    """``cond()``'s first true value, polled until ``timeout`` seconds pass (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:g} s")
        time.sleep(0.1)
