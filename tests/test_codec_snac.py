"""``snac-24khz`` against the ``snac`` package: same files, same speech -> same codes, same audio.

Random-weight SNAC models (the 24 kHz architecture, narrow; one with local attention) are written in
the upstream's own format (``config.json`` + ``pytorch_model.bin``, ``standins.write_snac``) and read by
upstream with ``SNAC.from_pretrained(folder)``. Both sides run on one thread, on the exact signal slmtok
feeds its model (real speech converted from 8 or 16 kHz by ``slmtok.audio.prepare``).

- Codes: every frame equal to upstream's ``model.encode(model.preprocess(x))`` (0 mismatching frames),
  packed 7 rows per coarse frame (level 0, then level 1's 2 codes, then level 2's 4 codes). That is the
  exact condition on one torch thread. With upstream on two threads, slmtok (whose pieces always run on
  one intra-op thread) still gives upstream's one-thread codes bit for bit, so a frame can differ from
  upstream's two-thread codes only where upstream's own codes change with the thread count.
- Audio: upstream's ``decode`` is random (``NoiseBlock`` draws ``torch.randn`` from the global RNG);
  slmtok's draws from its own generator seeded with ``noise_seed``, so the reference is upstream's
  ``decode`` right after ``torch.manual_seed(noise_seed)``, cut to the input length as ``SNAC.forward``.
"""

from __future__ import annotations

import math

import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.audio import resample
from slmtok.codecs import standins
from slmtok.codecs.loading import CheckpointError
from slmtok.errors import CodesError

from . import test_codec_parity as parity
from .test_codec_parity import file_card, model_input

one_thread = parity.one_thread  # fixtures shared with the other codecs' parity tests: one thread, and
utterances = parity.utterances  # four real utterances at 16 kHz (2.2, 1.7, 1.3, 0.9 s)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weights_only.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def snac_files(tmp_path_factory):
    return standins.write_snac(tmp_path_factory.mktemp("snac") / "snac_24khz")


@pytest.fixture(scope="module")
def upstream(snac_files):
    from snac import SNAC

    return SNAC.from_pretrained(str(snac_files[0].parent)).eval()


@pytest.fixture(scope="module")
def tok(snac_files):
    return slmtok.load("snac-24khz", checkpoint=str(snac_files[0].parent))


def upstream_rows(levels: list[torch.Tensor]) -> torch.Tensor:
    """Upstream codes (``[1, T]``, ``[1, 2T]``, ``[1, 4T]``) as the 7 rows ``[1, 7, T]`` of the layout."""
    t = levels[0].shape[-1]
    return torch.cat(
        [levels[0][:, None], *(c.view(1, t, c.shape[-1] // t).transpose(1, 2) for c in levels[1:])], 1
    )


def upstream_encode(model, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        return model.encode(model.preprocess(x))


def upstream_decode(model, levels: list[torch.Tensor], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.decode(levels)


def mismatching_frames(ours: torch.Tensor, theirs: torch.Tensor) -> int:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return int((ours != theirs).any(dim=1).sum())


@pytest.mark.parametrize("rate", [8000, 16000])
def test_codes_and_audio_match_upstream(tok, upstream, utterances, rate):
    for utterance in utterances:
        wav = resample(utterance, 16000, rate)
        x = model_input(tok, wav, rate)
        levels = upstream_encode(upstream, x)
        tokens = tok.encode(wav, rate)
        assert tokens.codes.shape[:2] == (1, 7) and int(tokens.lengths[0]) == math.ceil(x.shape[-1] / 2048)
        assert mismatching_frames(tokens.codes, upstream_rows(levels)) == 0
        assert int(tokens.extras["samples"].sum()) == x.shape[-1]
        reference = upstream_decode(upstream, levels)  # [1, 1, T * 2048]
        audio = tok.decode(tokens)
        assert int(audio.lengths[0]) == x.shape[-1]  # cut to the input, as SNAC.forward
        torch.testing.assert_close(audio.wav, reference[..., : x.shape[-1]], rtol=0, atol=1e-6)
        bare = tok.decode(type(tokens)(tokens.codes, tokens.lengths, tokens.frame_rate, tokens.tokenizer))
        torch.testing.assert_close(bare.wav, reference, rtol=0, atol=1e-6)  # no extras: all T * 2048


def test_on_two_threads_codes_differ_only_where_upstream_itself_changes(tok, upstream, utterances):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for utterance in utterances:
            x = model_input(tok, utterance, 16000)
            tokens = tok.encode(utterance, 16000)
            multi = upstream_rows(upstream_encode(upstream, x))
            torch.set_num_threads(1)
            single = upstream_rows(upstream_encode(upstream, x))
            torch.set_num_threads(2)
            assert mismatching_frames(tokens.codes, single) == 0
            ours_vs_multi = (tokens.codes != multi).any(dim=1)
            upstream_own = (single != multi).any(dim=1)
            assert not (ours_vs_multi & ~upstream_own).any()
    finally:
        torch.set_num_threads(before)


def test_batch_equals_single_and_upstream(tok, upstream, utterances):
    lengths = [x.numel() for x in utterances]
    batch = tok.encode(slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths)
    for i, x in enumerate(utterances):
        alone = tok.encode(x, 16000)
        assert torch.equal(batch.item(i), alone.item(0))
        levels = upstream_encode(upstream, model_input(tok, x, 16000))
        assert mismatching_frames(batch.item(i)[None], upstream_rows(levels)) == 0
    audio = tok.decode(batch)
    for i in range(len(utterances)):
        torch.testing.assert_close(audio.item(i), tok.decode(batch.select([i])).item(0), rtol=0, atol=0)


def test_decode_is_seeded_and_leaves_the_global_rng_alone(snac_files, upstream, utterances):
    folder = str(snac_files[0].parent)
    tok0 = slmtok.load("snac-24khz", checkpoint=folder)
    tok7 = slmtok.load("snac-24khz", checkpoint=folder, noise_seed=7)
    assert tok7.ref.options["noise_seed"] == 7 and tok0.card.hash == tok7.card.hash
    tokens = tok7.encode(utterances[0], 16000)
    state = torch.random.get_rng_state()
    a, b = tok7.decode(tokens), tok0.decode(tokens)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(a.wav, b.wav)
    reference = upstream_decode(upstream, tok7.unpack(tokens.codes), seed=7)
    torch.testing.assert_close(a.wav, reference[..., : a.wav.shape[-1]], rtol=0, atol=1e-6)


def test_n_codebooks_keep_whole_levels(snac_files, tok, upstream, utterances):
    full = tok.encode(utterances[1], 16000)
    for k, bits in ((1, 12), (3, 36), (7, 84)):
        part = tok.encode(utterances[1], 16000, n_codebooks=k)
        assert torch.equal(part.codes, full.codes[:, :k])
        loaded = slmtok.load("snac-24khz", checkpoint=str(snac_files[0].parent), n_codebooks=k)
        assert loaded.card.n_codebooks == k and loaded.card.bitrate == pytest.approx(24000 / 2048 * bits)
        # fewer levels decode as truncated RVQ: the missing levels' latents are zero
        levels = tok.unpack(part.codes)
        with torch.inference_mode():
            z = sum(
                vq.out_proj(vq.decode_code(c)).repeat_interleave(vq.stride, dim=-1)
                for vq, c in zip(upstream.quantizer.quantizers, levels, strict=False)
            )
            torch.manual_seed(0)
            reference = upstream.decoder(z)
        audio = tok.decode(part)
        torch.testing.assert_close(audio.wav, reference[..., : audio.wav.shape[-1]], rtol=0, atol=1e-6)
    for k in (2, 4, 5, 6):
        with pytest.raises(CodesError, match="whole levels"):
            tok.encode(utterances[1], 16000, n_codebooks=k)
        with pytest.raises(CodesError, match="whole levels"):
            tok.decode(type(full)(full.codes[:, :k], full.lengths, full.frame_rate, full.tokenizer))
    with pytest.raises(CodesError, match="whole levels"):
        slmtok.load("snac-24khz", checkpoint=str(snac_files[0].parent), n_codebooks=2)


def test_chunked_codes_and_audio_equal_whole_input(tmp_path, utterances):
    config, _ = standins.write_snac(tmp_path / "quiet", noise=False)  # no noise: audio comparable too
    whole = slmtok.load("snac-24khz", checkpoint=str(config.parent))
    chunked = slmtok.load("snac-24khz", checkpoint=str(config.parent))
    chunked.chunk_frames = 3  # many cores, each with the receptive field as context
    wav = torch.cat(utterances)
    a, b = whole.encode(wav, 16000), chunked.encode(wav, 16000)
    assert b.codes.shape[-1] > 3 * (chunked.chunk_frames + 2 * chunked.encode_context)
    assert mismatching_frames(a.codes, b.codes) == 0
    torch.testing.assert_close(chunked.decode(a).wav, whole.decode(a).wav, rtol=0, atol=1e-5)


def test_local_attention_model_pads_as_upstream(tmp_path, utterances):
    """With ``attn_window_size`` the padding is seen by the attention windows: slmtok pads each item to
    upstream's multiple and keeps every frame upstream gives, so codes and audio still match."""
    from snac import SNAC

    config, _ = standins.write_snac(tmp_path / "attn", attn_window_size=8, decoder_dim=64)
    model = SNAC.from_pretrained(str(config.parent)).eval()
    tok = slmtok.load("snac-24khz", checkpoint=str(config.parent))
    assert tok.width_multiple_frames == 2  # lcm(4, 8) / 4: 4096 samples
    lengths = [x.numel() for x in utterances]
    batch = tok.encode(slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths)
    for i, x in enumerate(utterances):
        model_x = model_input(tok, x, 16000)
        levels = upstream_encode(model, model_x)
        assert mismatching_frames(batch.item(i)[None], upstream_rows(levels)) == 0
        reference = upstream_decode(model, levels)
        audio = tok.decode(batch.select([i]))
        torch.testing.assert_close(audio.wav, reference[..., : model_x.shape[-1]], rtol=0, atol=1e-6)
    chunked = slmtok.load("snac-24khz", checkpoint=str(config.parent))
    chunked.chunk_frames = 3  # rounded up to whole windows
    assert chunked.chunk_frames % 2 == 0
    wav = torch.cat(utterances)
    a, b = tok.encode(wav, 16000), chunked.encode(wav, 16000)
    assert b.codes.shape[-1] > 3 * (chunked.chunk_frames + 2 * chunked.encode_context)
    assert mismatching_frames(a.codes, b.codes) == 0


def test_checkpoint_forms_and_cards(tmp_path, monkeypatch, snac_files):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    config, weights = snac_files
    folder = slmtok.load("snac-24khz", checkpoint=str(config.parent))
    pair = slmtok.load("snac-24khz", checkpoint=(str(config), str(weights)))
    assert folder.card.hash == pair.card.hash and len(folder.card.hash) == 64
    via_card = slmtok.load(
        "snac-24khz", card=file_card(tmp_path, "snac-24khz", {"config": config, "weights": weights})
    )
    assert via_card.card.hash == folder.card.hash
    assert (tmp_path / "home" / "hub" / "snac-24khz-local" / "pytorch_model.bin").is_file()
    (tmp_path / "bad").mkdir()
    bad = file_card(tmp_path / "bad", "snac-24khz", {"config": config, "weights": weights}, sha256=False)
    with pytest.raises(hub.ChecksumError):
        slmtok.load("snac-24khz", card=bad)
    other, _ = standins.write_snac(tmp_path / "other", encoder_dim=8)
    with pytest.raises(CheckpointError, match="does not match its config"):
        slmtok.load("snac-24khz", checkpoint=(str(other), str(weights)))
    with pytest.raises(CheckpointError, match="no such"):
        slmtok.load("snac-24khz", checkpoint=str(tmp_path / "bad"))
