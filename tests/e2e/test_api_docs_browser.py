"""The API docs page (/schema) of a real `serve` process in a real headless browser (Chromium,
from Debian's `chromium` package) with no network but the loopback: Swagger UI loads from the
files the package ships, and lists every operation (issue 12, item 3). Skipped, with the
reason, where Chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .agent_process import serving

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                         "google-chrome")) if p), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium): "
                             "the headless-browser check of the API docs needs it")]

OPERATIONS = {("POST", "/agents/training/start"), ("GET", "/agents/training/status/{project_id}"),
              ("POST", "/agents/training/cancel/{project_id}"),
              ("GET", "/agents/training/projects"),
              ("GET", "/agents/training/projects/{project_id}"), ("GET", "/health")}
GET_BLUE, POST_GREEN = (0x61, 0xAF, 0xFE), (0x49, 0xCC, 0x90)  # Swagger UI's method colours


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the network cut off but for the loopback: every other URL goes
    to a dead proxy and no host name resolves."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1280,2400",
         "--virtual-time-budget=15000", *args, url],
        capture_output=True, text=True, timeout=180, check=True)


def share_of(image: Image.Image, colour: tuple[int, int, int]) -> float:
    """The share of the screenshot's pixels within a few levels of `colour`."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float((np.abs(rgb - np.array(colour)).max(axis=2) <= 12).mean())


def test_the_docs_page_lists_every_operation_with_no_network(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with serving(home) as client:
        url = f"{client.base_url}/schema"
        page = client.get("/schema").text
        assert "cdn." not in page and "unpkg" not in page  # nothing to fetch from elsewhere
        dom = chromium(url, tmp_path / "profile", "--dump-dom").stdout
        shot = tmp_path / "docs.png"
        chromium(url, tmp_path / "profile2", f"--screenshot={shot}")
    # the DOM Swagger UI built: one block per operation, method and path
    found = set(re.findall(r'<span class="opblock-summary-method">(\w+)</span>.*?'
                           r'data-path="([^"]+)"', dom, flags=re.S))
    assert OPERATIONS <= found, sorted(found)
    assert "training-agent" in dom and "TrainingConfig" in dom
    # and painted: the GET (blue) and POST (green) bars cover a visible part of the screen
    image = Image.open(shot)
    assert share_of(image, GET_BLUE) > 0.002 and share_of(image, POST_GREEN) > 0.002
