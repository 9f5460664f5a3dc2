"""A checkout folder named ``slmtok/`` imports as the working package from its parent folder.

Python puts the current folder first on ``sys.path`` (and Ray puts the driver's folder first in its
workers), so from the parent of a checkout named ``slmtok/`` ``import slmtok`` finds the checkout, not the
installed package. Reference: CPython's import system (a folder without ``__init__.py`` imports as an
empty namespace package); the expected files are the checkout's own, named by path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("slmtok", "tokenizers", "codecs", "vocoders", "hub")

PROBE = """
import slmtok
import slmtok.cli.main, slmtok.codecs, slmtok.hub, slmtok.tokenizers, slmtok.vocoders
print(slmtok.__file__)
print(slmtok.tokenizers.__file__)
print(slmtok.cli.main.__file__)
print(slmtok.load.__module__, slmtok.__version__)
"""


def _checkout(tmp_path: Path, with_root_init: bool) -> Path:
    """``tmp_path/slmtok/``: a checkout's layout (its folders linked, not copied), so the files the probe
    imports tell this checkout apart from the editable install."""
    checkout = tmp_path / "slmtok"
    checkout.mkdir()
    for name in MAPPED:
        (checkout / name).symlink_to(ROOT / name, target_is_directory=True)
    if with_root_init:
        shutil.copy(ROOT / "__init__.py", checkout / "__init__.py")
    return checkout


def _probe(cwd: Path, *, ray_like: bool = False) -> subprocess.CompletedProcess:
    code = PROBE
    if ray_like:  # a Ray worker: started elsewhere, the driver's folder inserted first on sys.path
        code = f"import sys; sys.path.insert(0, {str(cwd)!r})\n" + code
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd if not ray_like else "/",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ray_like", [False, True], ids=["cwd", "ray-worker-path"])
def test_a_checkout_named_slmtok_imports_as_the_package_from_its_parent(tmp_path, ray_like):
    checkout = _checkout(tmp_path, with_root_init=True)
    out = _probe(tmp_path, ray_like=ray_like)
    assert out.returncode == 0, out.stderr[-2000:]
    core, tokenizers, cli, version = out.stdout.split("\n")[:4]
    assert core == str(checkout / "slmtok" / "__init__.py")
    assert tokenizers == str(checkout / "tokenizers" / "__init__.py")  # package-dir mapping honoured
    assert cli == str(checkout / "slmtok" / "cli" / "main.py")
    assert version.split() == ["slmtok.api", __import__("slmtok").__version__]


def test_without_the_root_init_the_checkout_shadows_the_package(tmp_path):
    """The bug this layout fixes (negative control): the bare checkout is an empty namespace package."""
    _checkout(tmp_path, with_root_init=False)
    out = _probe(tmp_path)
    assert out.returncode != 0 and "module 'slmtok' has no attribute 'load'" in out.stderr


def test_the_root_init_does_nothing_under_another_name(tmp_path):
    """A checkout named e.g. ``main/`` imported as ``main`` stays an inert module (no slmtok code runs)."""
    folder = tmp_path / "main"
    folder.mkdir()
    shutil.copy(ROOT / "__init__.py", folder / "__init__.py")
    code = "import main, sys; print(hasattr(main, 'load'), 'slmtok' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow  # starts a Ray cluster (about 20 s)
def test_in_a_ray_worker_started_from_the_parent(tmp_path):
    """Ray starts its workers in the driver's folder with that folder first on ``sys.path``."""
    pytest.importorskip("ray")
    checkout = _checkout(tmp_path, with_root_init=True)
    code = (
        "import ray\n"
        "ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)\n"
        "@ray.remote\n"
        "def probe():\n"
        "    import slmtok, slmtok.tokenizers\n"
        "    return slmtok.__file__, slmtok.tokenizers.__file__, slmtok.load.__module__\n"
        "print('|'.join(ray.get(probe.remote())))\n"
        "ray.shutdown()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].split("|") == [
        str(checkout / "slmtok" / "__init__.py"),
        str(checkout / "tokenizers" / "__init__.py"),
        "slmtok.api",
    ]
