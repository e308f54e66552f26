"""The report in a real browser: headless Chromium driven by Playwright.

Chromium comes from the system (Debian's ``chromium`` package), never from
``playwright install``; without it these tests are skipped with how to get it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.report import gather, write_report
from casbak.repository import Repository
from tests.conftest import FakeClock
from tests.test_references import store

CHROMIUM = os.environ.get("CASBAK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = "<img src=x onerror=alert(1)>"

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("browser tests need Chromium: apt-get install chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


class Watched:
    """A page with everything it asked for and complained about recorded."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.as_uri()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1040, "height": 900})
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", self._dialog)
        self.page.goto(self.url, wait_until="load")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def attribute(self, selector: str, name: str) -> str:
        return str(self.page.locator(selector).get_attribute(name))


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Six snapshots, one of a tenant whose id and name are markup."""
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    acme = {"id": "acme", "name": "Acme", "domains": ["a.com"]}
    evil = {"id": HOSTILE, "name": HOSTILE, "description": "</title><script>alert(2)</script>"}
    ids = {
        "sync1": store(repo, clock, "sync-apply", acme, evil),
        "acme-a": store(repo, clock, "tenant-update", {**acme, "name": "Acme Inc"}),
        "evil": store(repo, clock, "tenant-update", {**evil, "name": HOSTILE + "!"}),
        "acme-b": store(repo, clock, "tenant-update", {**acme, "name": "Acme AG"}),
        "delete": store(repo, clock, "tenant-delete", {**acme, "name": "Acme AG"}),
        "sync2": store(repo, clock, "sync-apply", acme, evil),
    }
    path = tmp_path / "report.html"
    write_report(path, gather(repo))
    return path, ids


def test_report_in_chromium(
    browser: Any, written: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, ids = written
    watched = Watched(browser, path)
    page = watched.page
    assert watched.errors == []
    assert watched.requests == [watched.url]
    assert watched.dialogs == []
    # One mark per snapshot on the timeline, one point per snapshot in growth.
    assert watched.count("#timeline-chart circle.mk") == len(ids)
    assert watched.attribute("#timeline-chart", "data-marks") == str(len(ids))
    assert watched.count("#growth-chart circle.pt") == len(ids)
    assert watched.attribute("#growth-chart", "data-points") == str(len(ids))
    # The hostile tenant is text, and made no element of its own.
    assert HOSTILE in str(page.text_content("#churn-chart"))
    assert HOSTILE in page.inner_text("#tenants")
    assert watched.count("img") == 0
    assert watched.count("script") == 0
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    # acme's section: its changes with old and new values, newest first.
    acme = page.locator('.tenant[data-tenant="acme"]')
    changes = acme.locator("tr.change")
    rows = [changes.nth(index).inner_text().split("\t") for index in range(changes.count())]
    assert rows == [
        ["$.name", "changed", '"Acme AG"', '"Acme"'],
        ["$.name", "changed", '"Acme Inc"', '"Acme AG"'],
        ["$.name", "changed", '"Acme"', '"Acme Inc"'],
    ]
    # The version the delete snapshot held again is one version held by two snapshots.
    assert "held by 2 snapshots" in acme.inner_text()
    assert "The first version stored." in acme.inner_text()
    # A churn row links to its tenant's section.
    anchor = page.locator("#churn-chart a").first.get_attribute("href")
    assert anchor is not None and page.locator(f"{anchor}.tenant").count() == 1
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 0
    page.close()


def test_hovering_a_mark_names_its_snapshot(
    browser: Any, written: tuple[Path, dict[str, str]]
) -> None:
    path, ids = written
    watched = Watched(browser, path)
    titles = watched.page.eval_on_selector_all(
        "#timeline-chart circle.mk title", "nodes => nodes.map(n => n.textContent)"
    )
    shown = sorted(title.split("\n")[0].split(" · ")[-1] for title in titles)
    assert shown == sorted(snapshot_id[:12] for snapshot_id in ids.values())
    assert any("tenant-delete · target acme" in title for title in titles)
    watched.page.close()
