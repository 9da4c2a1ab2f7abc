"""A real headless Chromium for the status page's tests, and a small DOM to read what it (or the server)
gives back: elements with their attributes and text, found by tag and attributes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class Dom(HTMLParser):
    """Every element of a document, with its attributes and the text inside it (its descendants' included)."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "line", "circle", "polyline", "path", "rect"})

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        if self._open:
            self._open[-1].children.append(element)
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def find(self, tag: str | None = None, **attrs: str | None) -> list[Element]:
        """Elements by tag and attributes (`data_vin="X"` for data-vin="X"; None: the attribute is present)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [
            element
            for element in self.elements
            if (tag is None or element.tag == tag)
            and all(
                name in element.attrs if value is None else element.attrs.get(name) == value
                for name, value in wanted.items()
            )
        ]

    def one(self, tag: str | None = None, **attrs: str | None) -> Element:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"{tag} {attrs}: {len(found)} elements"
        return found[0]

    def count(self, **attrs: str) -> int:
        return int(self.one(**attrs).text.replace(",", ""))


def chromium_path() -> str:
    """Debian's chromium. Missing, the browser tests are skipped, except in CI (`CI=true`), where .ci/run
    installs it and a skip would hide a broken install: there they fail."""
    path = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is needed in CI (.ci/run installs Debian's package) and is not installed")
        pytest.skip("chromium is not installed here (apt-get install chromium)")
    return path


def browse(chromium: str, profile: Path, *args: str) -> str:
    """Run chromium headless on the page; its stdout. A page that ran a script opening a dialog (alert) never
    finishes loading: the browser and its helpers are stopped after 60 s and the test fails saying so."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",  # a profile of its own: other browsers may run beside it
        *args,
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as browser:
        try:
            out, err = browser.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.communicate()
            pytest.fail("chromium did not finish the page in 60 s: did a script in it open a dialog?")
    assert browser.returncode == 0, err[-2000:]
    return out
