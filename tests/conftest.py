"""Shared pytest set-up for the unit tests and for nbval's notebook runs.

`make test` passes tests/ first, so this file is loaded for the whole session and
its hooks also see the notebook items of notebooks/, solutions/ and exercises/.
"""
import os

import pytest

# Headless plots for the test process (and the subprocesses it starts). Only here:
# importing tfcore never chooses a backend.
os.environ["MPLBACKEND"] = "Agg"

# nbval waits 5 s for each kernel message; a busy 2-core machine (two xdist workers,
# two kernels, torch threads) can miss that and fail a correct cell.
NBVAL_OUTPUT_TIMEOUT = 120


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = max(item.output_timeout, NBVAL_OUTPUT_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Start nbval's kernels without MPLBACKEND=Agg.

    A kernel inherits this process's environment, and ipykernel picks the inline
    backend only when MPLBACKEND is unset; with Agg, `plt.show()` would print a
    warning instead of the figure the saved notebook has.
    """
    if not hasattr(item, "output_timeout"):
        yield
        return
    saved = os.environ.pop("MPLBACKEND", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
