"""Without Chromium the browser tests skip, saying how to install it; in CI they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_browser_test(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # On SQLite, in a database of its own: never the running suite's PostgreSQL one.
        if k not in ("CI", "SMTPRELAY_TEST_DATABASE", "SMTPRELAY_SCREENSHOT_DIR")
    }
    env["SMTPRELAY_TEST_CHROMIUM"] = "/nonexistent/chromium"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rsE",
            "tests/browser/test_admin_in_browser.py::test_an_operator_logs_in_and_sees_the_app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("ci", "outcome"), [(None, "1 skipped"), ("true", "1 error")])
def test_a_missing_chromium_skips_outside_ci_and_fails_in_ci(ci, outcome):
    result = run_browser_test(ci)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "/nonexistent/chromium is missing: install Debian's Chromium" in result.stdout
    assert "apt-get install chromium" in result.stdout
    assert (result.returncode == 0) is (ci is None)
