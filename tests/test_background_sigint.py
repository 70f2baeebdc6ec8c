"""Tests that interrupt a child still work when pytest itself was started in the background.

`nohup pytest &` (as CI wrappers do) starts pytest with SIGINT ignored, and an ignored signal is
inherited across exec: a `migrate` child would then never see the SIGINT a test sends it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from clirun import ROOT

INTERRUPTING_TESTS = [
    "tests/test_safety_faults.py::test_signals_to_shim_reach_the_program",
    "tests/test_stack_safety.py::test_sigint_mid_stage_rolls_back_at_once",
]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_interrupting_tests_pass_under_a_pytest_with_sigint_ignored() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *INTERRUPTING_TESTS],
        cwd=ROOT,
        preexec_fn=_ignore_sigint,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout, result.stdout[-3000:]
