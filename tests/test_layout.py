"""Packaging: the component folders install under ``slmtok.*`` and hide nothing of the standard library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {
    "slmtok.tokenizers": "tokenizers",
    "slmtok.codecs": "codecs",
    "slmtok.vocoders": "vocoders",
    "slmtok.hub": "hub",
}


def test_required_top_level():
    for name in (
        "pyproject.toml",
        "README.md",
        "tokenizers",
        "codecs",
        "vocoders",
        "benchmarks",
        "tests",
        "hub",
        "slmtok",
    ):
        assert (ROOT / name).exists(), name


@pytest.mark.parametrize(("module", "folder"), sorted(MAPPED.items()))
def test_mapped_packages_resolve_to_their_folders(module, folder):
    code = f"import {module} as m, pathlib; print(pathlib.Path(m.__file__).resolve().parent)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert Path(out.stdout.strip()) == ROOT / folder


def test_standard_library_codecs_is_untouched():
    code = (
        "import codecs, slmtok.codecs, sysconfig; print(codecs.__file__); print(codecs.lookup('utf-8').name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    import sysconfig

    assert Path(out[0]).resolve().parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert out[1] == "utf-8"


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for module, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([module, *rel.parts]))
    assert found == listed


def test_wheel_contains_mapped_packages_and_weights(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("slmtok-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "slmtok/codecs/__init__.py",
        "slmtok/tokenizers/baselines/mel_rvq.py",
        "slmtok/tokenizers/baselines/weights/mel-rvq.safetensors",
        "slmtok/tokenizers/baselines/weights/mfcc-km.safetensors",
        "slmtok/vocoders/griffin_lim.py",
        "slmtok/hub/__init__.py",
        "slmtok/cli/main.py",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("codecs/", "tokenizers/")) for n in names)
