"""Test-suite plumbing.

Tests that need detectron2 carry ``@pytest.mark.detectron2`` (or ``pytestmark = pytest.mark.detectron2``
at module level). Without detectron2 they are skipped, and the run ends with a line that counts them, so
a green run on a machine without detectron2 is never mistaken for a full one.
"""
import os
import tempfile

import pytest

from d2imbalance._compat import detectron2_available

# Keep CPU tests deterministic in thread count and quiet about missing GPUs.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Generated datasets (shapes) go to a throw-away directory, not the user's cache, unless one is set.
os.environ.setdefault("D2IMBALANCE_CACHE", tempfile.mkdtemp(prefix="d2imbalance-test-cache-"))

_SKIP_REASON = "detectron2 is not installed (see README: Install for real use)"


def pytest_configure(config):
    config.addinivalue_line("markers", "detectron2: the test needs detectron2 and is skipped without it")
    config.addinivalue_line("markers", "slow: end-to-end test taking more than a few seconds")


def pytest_collection_modifyitems(config, items):
    if detectron2_available():
        return
    skip = pytest.mark.skip(reason=_SKIP_REASON)
    for item in items:
        if "detectron2" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    no_d2 = [r for r in skipped if _SKIP_REASON in str(r.longrepr)]
    other = len(skipped) - len(no_d2)
    ran = sum(len(terminalreporter.stats.get(k, [])) for k in ("passed", "failed", "error"))
    state = "installed" if detectron2_available() else "NOT installed"
    terminalreporter.write_line(
        f"d2imbalance: {ran} tests ran, {len(no_d2)} skipped for lack of detectron2, "
        f"{other} skipped for other reasons (detectron2 {state})."
    )
