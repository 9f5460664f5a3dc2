"""Registries: registration rules, lookups, lazy imports and entry-point plug-ins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

import slmtok
from slmtok.errors import RegistryError
from slmtok.registry import FEATURES, KMEANS_BACKENDS, TOKENIZERS, VOCODERS, Registry


def test_builtins_are_registered_lazily():
    assert {"mel-rvq", "mfcc-km", "mulaw-8bit"} <= set(slmtok.list_tokenizers())
    assert slmtok.list_tokenizers("mel-*") == ["mel-rvq"]
    assert {"log-mel", "mfcc"} <= set(FEATURES.names())
    assert {"faiss", "torch"} <= set(KMEANS_BACKENDS.names())
    assert "griffin-lim" in VOCODERS
    code = "import sys, slmtok; slmtok.list_tokenizers(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_register_rules():
    reg = Registry("widget", "slmtok.test-widgets")
    reg.register("a-1", dict)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a-1", list)
    reg.register("a-1", list, exist_ok=True)
    assert reg.create("a-1") == []
    for bad in ("Upper", "with space", "", "-lead"):
        with pytest.raises(ValueError, match="lowercase"):
            reg.register(bad, dict)
    with pytest.raises(ValueError, match="callable"):
        reg.register("b", 42)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(RegistryError, match="did you mean mel-rvq") as info:
        slmtok.load("mel-rvc")
    assert "\n" not in str(info.value)


def test_register_tokenizer_function():
    def factory(device="cpu", **options):
        return slmtok.load("mulaw-8bit", device=device, sample_rate=8000)

    slmtok.register_tokenizer("test-mulaw-8k", factory)
    try:
        assert slmtok.load("test-mulaw-8k").card.sample_rate == 8000
        with pytest.raises(RegistryError):
            slmtok.register_tokenizer("test-mulaw-8k", factory)
    finally:
        TOKENIZERS.unregister("test-mulaw-8k")


PLUGIN = '''
"""A third-party tokenizer: 4-level sign/magnitude quantization of 2 kHz decimated audio."""
import torch
from slmtok.tokenizer import Tokenizer, content_hash
from slmtok.types import TokenizerCard


class ToyTokenizer(Tokenizer):
    def __init__(self, *, device="cpu", **options):
        super().__init__(device=device)
        self.card = TokenizerCard(name="toy-plugin", kind="baseline", sample_rate=8000, channels=1,
                                  frame_rate=2000.0, codebook_sizes=(4,), max_codebooks=1,
                                  license="MIT", source="test plug-in", hash=content_hash({"toy": 1}))

    def _encode(self, wav, lengths, n_codebooks):
        x = wav[:, :, ::4]
        codes = (x.sign() > 0).long() * 2 + (x.abs() > 0.1).long()
        return codes, (lengths + 3) // 4, {}

    def _decode(self, codes, lengths, extras):
        level = torch.where(codes % 2 == 1, 0.3, 0.05) * torch.where(codes >= 2, 1.0, -1.0)
        return level.repeat_interleave(4, dim=-1).float(), lengths * 4
'''


def test_entry_point_plugin_is_found_on_first_lookup(tmp_path):
    (tmp_path / "toy_slmtok_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "toy_slmtok_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-slmtok-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[slmtok.tokenizers]\ntoy-plugin = toy_slmtok_plugin:ToyTokenizer\n"
        "[slmtok.vocoders]\nmel-rvq = toy_slmtok_plugin:ToyTokenizer\n"
    )
    code = textwrap.dedent(
        """
        import sys, warnings, torch, slmtok
        from slmtok.registry import TOKENIZERS
        assert "toy_slmtok_plugin" not in sys.modules
        assert TOKENIZERS._plugins_loaded is False          # nothing discovered at import time
        tok = slmtok.load("toy-plugin")
        assert slmtok.tokenizer_entry("toy-plugin").origin == "plugin"
        assert "toy-plugin" in slmtok.list_tokenizers()
        tokens = tok.encode(torch.randn(2, 1, 800) * 0.2, 8000, lengths=[800, 555])
        assert tokens.codes.shape == (2, 1, 200) and tokens.lengths.tolist() == [200, 139]
        assert tok.decode(tokens).wav.shape == (2, 1, 800)
        print("plugin ok")
        """
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "plugin ok" in result.stdout


def test_plugin_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    from importlib import metadata

    reg = Registry("widget", "slmtok.test-shadow")
    reg.register("taken", dict, origin="builtin")
    ep = metadata.EntryPoint(name="taken", value="builtins:list", group="slmtok.test-shadow")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep] if group == "slmtok.test-shadow" else [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["taken"]  # listing discovers plug-ins
    assert reg.create("taken") == {}
    assert any("ignored" in str(w.message) for w in caught)
