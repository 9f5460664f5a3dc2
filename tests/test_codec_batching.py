"""Exact batching and chunking of the codecs: the ragged layer rules, canonical widths, long input.

Small random-weight stand-ins (``slmtok.codecs.standins``) on real speech; one torch thread.
"""

from __future__ import annotations

import pytest
import torch

import slmtok
from slmtok.batching import pad_stack
from slmtok.codecs import ragged, standins
from slmtok.codecs.base import group_pieces, plan_pieces
from slmtok.corpora import asterisk_prompts

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech() -> list[torch.Tensor]:
    """Five real utterances at 16 kHz, 0.4 to 2 s, two talkers."""
    out = []
    for language in ("it", "ru"):
        for path in asterisk_prompts(language)[3:]:
            wav, rate = slmtok.read_audio(path)
            if wav.shape[-1] >= 32000:
                out.append(wav[0])
            if len(out) in (3, 6):
                break
    cuts = [32000, 21111, 6400, 14999, 27001]
    return [x[:n] for x, n in zip(out, cuts, strict=False)]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("standins")
    return {
        "encodec-24khz": slmtok.load("encodec-24khz", checkpoint=str(standins.write_encodec(tmp / "e24.th"))),
        "dac-16khz": slmtok.load("dac-16khz", checkpoint=str(standins.write_dac(tmp / "d16.pth", "16khz"))),
        "speechtokenizer": slmtok.load(
            "speechtokenizer", checkpoint=[str(p) for p in standins.write_speechtokenizer(tmp / "st")]
        ),
    }


NAMES = ["encodec-24khz", "dac-16khz", "speechtokenizer"]


@pytest.mark.parametrize("name", NAMES)
def test_stacked_items_see_only_their_own_values(tokenizers, speech, name):
    """Several items in one stacked call (``stack_batches``): each item's encoder output equals its
    output alone at the same width, up to floating-point rounding (kernels may round differently for
    another batch size), and with plain zero padding instead of the ragged rules it would not."""
    model = tokenizers[name].model
    width = 32000 + 3200
    items = list(speech)
    batch = pad_stack([x[None] for x in items])
    batch = torch.nn.functional.pad(batch, (0, width - batch.shape[-1]))
    lengths = [x.numel() for x in items]
    with torch.inference_mode():
        together, out_lengths = ragged.run(model.encoder, batch, lengths)
        for i in range(len(items)):
            alone, n = ragged.run(model.encoder, batch[i : i + 1], [lengths[i]])
            assert n[0] == out_lengths[i]
            torch.testing.assert_close(together[i, :, : n[0]], alone[0, :, : n[0]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_codes_do_not_depend_on_the_rest_of_the_batch(tokenizers, speech, name):
    """Default (CPU) batching: the same bits for an item alone and in any batch, in any order."""
    tok = tokenizers[name]
    alone = [tok.encode(x, 16000) for x in speech]
    for order in ([0, 1, 2, 3, 4], [4, 2], [3, 1, 0], [2, 2, 2]):
        items = [speech[i] for i in order]
        batch = tok.encode(pad_stack([x[None] for x in items]), 16000, lengths=[x.numel() for x in items])
        for j, i in enumerate(order):
            assert torch.equal(batch.item(j), alone[i].item(0)), f"item {i} in batch {order}"
    decoded = tok.decode(slmtok.Tokens.cat(alone))
    for i, tokens in enumerate(alone):
        assert torch.equal(decoded.item(i), tok.decode(tokens).item(0)), f"decoded item {i}"


def test_plain_zero_padding_would_change_the_latents(tokenizers, speech):
    """Why the ragged rules exist: SpeechTokenizer's encoder (reflection padding, bidirectional LSTM) on
    a zero-padded batch gives a short item other latents than it gets alone; the ragged run does not."""
    model = tokenizers["speechtokenizer"].model
    items = speech[:3]
    batch = pad_stack([x[None] for x in items])
    with torch.inference_mode():
        naive = model.encoder(batch)
        ours, lengths = ragged.run(model.encoder, batch, [x.numel() for x in items])
        alone = model.encoder(items[2][None, None])
    n = lengths[2]
    assert alone.shape[-1] == n
    assert (naive[2, :, :n] - alone[0]).abs().max() > 1e-3 * alone.abs().max()
    torch.testing.assert_close(ours[2, :, :n], alone[0], rtol=0, atol=1e-6)


def test_bidirectional_lstm_reads_each_item_backwards_from_its_own_end():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True).eval()
    lengths = [9, 4, 7]
    seq = torch.randn(9, 3, 6)
    with torch.inference_mode():
        out = ragged.lstm_ragged(lstm, seq, lengths)
        for b, n in enumerate(lengths):
            torch.testing.assert_close(out[:n, b], lstm(seq[:n, b : b + 1])[0][:, 0], rtol=0, atol=1e-6)
    rev = ragged.reverse_items(torch.arange(9.0)[:, None, None].expand(9, 3, 1), lengths)
    assert rev[:4, 1, 0].tolist() == [3, 2, 1, 0] and rev[4:, 1, 0].tolist() == [4, 5, 6, 7, 8]


def test_piece_plans_cover_every_frame_once():
    assert plan_pieces(0, 10, chunk=20, context=3, scale=320, total=3100) == [
        plan_pieces(0, 10, 20, 3, 320, 3100)[0]
    ]
    pieces = plan_pieces(1, 95, chunk=20, context=3, scale=320, total=95 * 320 - 17)
    kept = [f for p in pieces for f in range(p.start // 320 + p.keep_from, p.start // 320 + p.keep_to)]
    assert kept == list(range(95))
    assert all(p.start % 320 == 0 and p.stop <= 95 * 320 - 17 for p in pieces)
    assert pieces[1].start == (20 - 3) * 320 and pieces[1].keep_from == 3
    assert group_pieces([100, 200, 100, 100, 200], max_samples=250, max_items=8) == [[1], [4], [0, 2], [3]]


@pytest.mark.parametrize("name", ["encodec-24khz", "speechtokenizer"])
def test_chunked_codes_of_recurrent_codecs_mostly_equal_whole_input_codes(tokenizers, speech, name):
    """EnCodec and SpeechTokenizer have LSTMs: a chunk's state is rebuilt from its context only, so codes
    near a core boundary may change. Here 1 s cores with 0.4 s of context on a 5 s input."""
    tok = tokenizers[name]
    wav = torch.cat(speech)
    whole = tok.encode(wav, 16000).codes
    saved = (tok.chunk_frames, tok.encode_context)
    try:
        rate = round(tok.card.frame_rate)
        tok.chunk_frames, tok.encode_context = rate, int(0.4 * rate)
        chunked = tok.encode(wav, 16000).codes
    finally:
        tok.chunk_frames, tok.encode_context = saved
    assert chunked.shape == whole.shape
    same = (chunked[0, 0] == whole[0, 0]).float().mean().item()
    assert same > 0.9, f"only {same:.1%} of codebook-0 codes survive chunking"


def near_tie_gap(tok, name: str, x: torch.Tensor, codes: torch.Tensor):
    """The parity tests' ``gap(t, q, a, b)`` for ``x`` (16 kHz) encoded alone by ``tok`` as ``codes``."""
    from slmtok.audio import prepare

    from .test_codec_parity import dac_gap, euclidean_gap

    wav = prepare(x, 16000, target_rate=tok.card.sample_rate, target_channels=tok.card.channels).wav
    model = tok.model
    with torch.inference_mode():
        if name.startswith("dac"):
            return dac_gap(model, model.encoder(model.preprocess(wav, model.sample_rate))[0], codes)
        latent = model.encoder(wav)[0]
    return euclidean_gap(latent, [layer._codebook.embed for layer in model.quantizer.vq.layers], codes)


@pytest.mark.parametrize("name", NAMES)
def test_stacked_batches_give_the_same_codes_up_to_near_ties(tokenizers, speech, name):
    """``stack_batches=True`` (the CUDA default) runs same-width items in one call: the same codes as
    one at a time except where rounding flips a near-tie: every differing frame must be one where a
    relative change below 1e-5 of the item's latent swaps the two codewords."""
    tok = tokenizers[name]
    items = speech + [x.flip(0) for x in speech]  # pairs of equal length share canonical widths
    lengths = [x.numel() for x in items]
    batch = pad_stack([x[None] for x in items])
    rows = tok.encode(batch, 16000, lengths=lengths)
    tok.stack_batches = True
    try:
        stacked = tok.encode(batch, 16000, lengths=lengths)
        decoded = tok.decode(rows)
    finally:
        tok.stack_batches = None
    assert torch.equal(stacked.lengths, rows.lengths)
    for i, x in enumerate(items):
        ours, alone = stacked.item(i), rows.item(i)
        frames = (ours != alone).any(dim=0).nonzero().flatten().tolist()
        gap = near_tie_gap(tok, name, x, alone) if frames else None
        for t in frames:  # each differing frame: a decision that rounding can flip (see parity tests)
            q = int((ours[:, t] != alone[:, t]).nonzero()[0])
            relative = gap(t, q, int(alone[q, t]), int(ours[q, t]))
            assert relative < 1e-5, f"item {i}, frame {t}, codebook {q}: not a near-tie ({relative:.2e})"
    reference = tok.decode(rows)
    for i in range(len(items)):
        torch.testing.assert_close(decoded.item(i), reference.item(i), rtol=0, atol=1e-4)
