"""Repository-wide pytest set-up.

A 600 s limit per test where pytest-timeout is installed (it is optional: a GPU box without it
must still run the tests; in addopts, ``--timeout`` would be an unknown option there).
"""

import os

import pytest

# A figure with an empty panel, an unlabelled axis or an unreadable legend fails the test that draws
# it (harness.report.figures.canvas.figure_problems); outside the tests it is a warning.
os.environ.setdefault("ODEBENCH_STRICT_FIGURES", "1")

DEFAULT_TIMEOUT_S = 600


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout's own pytest_configure reads the option
def pytest_configure(config):
    if config.pluginmanager.hasplugin("timeout") and not config.getoption("timeout", None):
        config.option.timeout = DEFAULT_TIMEOUT_S
