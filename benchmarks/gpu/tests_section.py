"""The ``pytest -m gpu`` tests (``tests/test_gpu.py``), run as a child process; counts from JUnit XML."""

from __future__ import annotations

import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from typing import Any

from common import Context


def gpu_tests(ctx: Context, timeout: float) -> dict[str, Any]:
    pytest = shutil.which("pytest")
    if pytest is None:
        return {"error": "pytest is not installed (pip install 'slmtok[test]')"}
    report = ctx.work / "gpu-tests.xml"
    command = [
        pytest,
        "-m",
        "gpu",
        "tests/test_gpu.py",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ctx.repo, capture_output=True, text=True, timeout=timeout)
        returncode, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        returncode, tail = None, f"timed out after {timeout:.0f} s: {str(exc.stdout or '')[-2000:]}"
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "device": ctx.device,
        "command": " ".join(["pytest", *command[1:-1]]),
        "returncode": returncode,
        "seconds": elapsed,
        "output_tail": tail,
    }
    if not report.exists():
        return {**out, "error": "no JUnit report written"}
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, (child.get("message") or "")[:300]
        cases.append(
            {"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message}
        )
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
    return {**out, "collected": len(cases), **counts, "cases": cases}
