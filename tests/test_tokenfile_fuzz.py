"""Fuzzing ``load_tokens`` and ``slmtok decode`` with hypothesis over mutations of real token files.

Every case must end as a valid decode or as one ``slmtok: error:`` line with exit 1, no output file, no
other file written, the input untouched, bounded memory and time (``tests/tokenfile_mutations.py``).
The reference is the observable behaviour (exit code, stderr text, files on disk, kernel peak RSS),
not slmtok's own validation code. The long run is ``benchmarks/tokenfile_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .tokenfile_mutations import MUTATIONS, base_files, dumps, join, mutate, run_case, split

CI_CASES = int(os.environ.get("SLMTOK_FUZZ_CASES", "300"))


class _HypothesisDraw:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integers(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def choice(self, options):
        return self.data.draw(st.sampled_from(list(options)))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return base_files(tmp_path_factory.mktemp("bases"))


@pytest.fixture(scope="module")
def cases_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cases")


def test_unmutated_files_decode(bases, tmp_path):
    for i, blob in enumerate(bases.values()):
        folder = tmp_path / str(i)
        folder.mkdir()
        outcome = run_case(blob, folder)
        assert outcome.kind == "decoded", outcome


_counter = iter(range(10**9))


@settings(
    max_examples=CI_CASES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_every_mutation_is_decoded_or_one_line_error(bases, cases_root, data):
    label, name, blob = mutate(bases, _HypothesisDraw(data))
    folder = cases_root / f"case{next(_counter)}"
    folder.mkdir()
    existing = data.draw(st.booleans())  # an output from an earlier run must survive a refusal
    outcome = run_case(blob, folder, max_bytes=1 << 30, max_wall=30.0, existing_output=existing)
    assert outcome.kind in ("error", "decoded"), (label, name, outcome)


def _broken(blob: bytes, name: str) -> bytes:
    """One mutation of each kind that certainly breaks ``blob`` (an ``mfcc-km`` dedup token file)."""
    import torch
    from safetensors.torch import load, save

    header, payload = split(blob)
    inner = json.loads(header["__metadata__"]["header"])
    if name == "truncate":
        return blob[: len(blob) // 2]
    if name == "flip":
        return blob[:8] + b"X" + blob[9:]
    if name == "header_length":
        return (2**40).to_bytes(8, "little") + blob[8:]
    if name == "slmtok_header":
        inner["tokenizer"]["options"] = "__deep_100000__"
    elif name == "metadata":
        header["__metadata__"]["format_version"] = "x"
    elif name == "tensor_table":
        header["codes"]["shape"] = [1, 1, 10**12]
    elif name == "tensor_values":
        tensors = load(blob)
        tensors["extras.durations"] = tensors["extras.durations"].clone()
        tensors["extras.durations"][0, 0, 0] = 10**9  # the 9 GB decode
        return save(tensors, metadata=header["__metadata__"])
    header["__metadata__"]["header"] = dumps(inner)
    assert name == "tensor_table" or torch.equal(load(join(header, payload))["codes"], load(blob)["codes"])
    return join(header, payload)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_one_breaking_mutation_of_each_kind_is_a_one_line_error(bases, tmp_path, name):
    outcome = run_case(_broken(bases["mfcc-km-dedup"], name), tmp_path)
    assert outcome.kind == "error" and outcome.rc == 1, outcome


@pytest.mark.parametrize("name", ["truncate", "slmtok_header", "tensor_values"])
def test_refusals_in_a_subprocess(bases, tmp_path, name):
    """The real ``slmtok`` process: exit 1, exactly one stderr line starting ``slmtok: error: ``, no
    output file, nothing else written (``tensor_values``: the issue's duration of 1e9)."""
    src = tmp_path / "bad.slmtok"
    src.write_bytes(_broken(bases["mfcc-km-dedup"], name))
    out = tmp_path / "out.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "slmtok.cli.main", "decode", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slmtok: error: "), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.slmtok"]
