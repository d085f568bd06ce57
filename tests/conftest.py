"""Shared pytest set-up for the unit tests and for nbval's notebook runs.

`make test` passes tests/ first, so this file is loaded for the whole session. Its
session-wide hook (pytest_collection_modifyitems) also sees the notebook cells of
notebooks/, solutions/ and exercises/; per-item hooks here would not.
"""
try:
    import matplotlib
except ImportError:  # the doctor tests still run
    matplotlib = None

# Headless plots in the test process only. Not through the MPLBACKEND variable: nbval's
# kernels inherit this process's environment, and ipykernel picks its inline backend
# only when MPLBACKEND is unset; with Agg, `plt.show()` in a notebook would print a
# warning instead of the figure the saved notebook has. Importing tfcore never picks
# a backend.
if matplotlib is not None:
    matplotlib.use("Agg")

# nbval waits 5 s for each kernel message; a busy 2-core machine (two xdist workers,
# two kernels, torch threads) can miss that and fail a correct cell.
NBVAL_OUTPUT_TIMEOUT = 120


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = max(item.output_timeout, NBVAL_OUTPUT_TIMEOUT)
