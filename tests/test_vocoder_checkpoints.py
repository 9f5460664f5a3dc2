"""Vocoder checkpoints go through ``slmtok.hub.safe_load``: legacy (non-zip) torch files load like zip
ones, a checkpoint naming code is refused in one line without running it, garbage is one line.

Reference: the state dict ``torch.load`` itself reads from the file the test wrote with ``torch.save``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmtok.errors import SlmtokError
from slmtok.tokenizers.semantic.standins import write_unit_vocoder
from slmtok.vocoders.unit_hifigan import UnitHiFiGAN, read_generator_state


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def vocoder_dir(tmp_path_factory):
    return write_unit_vocoder(tmp_path_factory.mktemp("voc"), 20, channels=64)


def test_legacy_format_loads_like_the_zip_format(vocoder_dir, tmp_path):
    reference = torch.load(vocoder_dir / "g_00000000", map_location="cpu", weights_only=True)["generator"]
    legacy = tmp_path / "g_00000000"
    torch.save({"generator": reference}, legacy, _use_new_zipfile_serialization=False)
    (tmp_path / "config.json").write_bytes((vocoder_dir / "config.json").read_bytes())
    state = read_generator_state(legacy)
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
    units = torch.randint(0, 20, (1, 30))
    a, _ = UnitHiFiGAN.load(tmp_path)(units, torch.tensor([30]))
    b, _ = UnitHiFiGAN.load(vocoder_dir)(units, torch.tensor([30]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("legacy", [False, True])
def test_checkpoint_naming_code_is_refused_without_running_it(vocoder_dir, tmp_path, legacy):
    reference = torch.load(vocoder_dir / "g_00000000", map_location="cpu", weights_only=True)["generator"]
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "g_00000000"
    torch.save(
        {"generator": reference, "extra": _Payload(marker)}, evil, _use_new_zipfile_serialization=not legacy
    )
    (tmp_path / "config.json").write_bytes((vocoder_dir / "config.json").read_bytes())
    with pytest.raises(SlmtokError, match="which is code") as error:
        UnitHiFiGAN.load(tmp_path)
    assert "\n" not in str(error.value) and not marker.exists()


def test_garbage_weights_are_one_line(vocoder_dir, tmp_path):
    (tmp_path / "config.json").write_bytes((vocoder_dir / "config.json").read_bytes())
    data = (vocoder_dir / "g_00000000").read_bytes()
    for i, blob in enumerate(
        [b"not a checkpoint at all", data[: len(data) // 3], b"\x80\x02" + b"\x00" * 50]
    ):
        path = tmp_path / f"g_0000000{i}"
        path.write_bytes(blob)
        with pytest.raises(SlmtokError) as error:
            UnitHiFiGAN.load(path)
        assert "\n" not in str(error.value)
