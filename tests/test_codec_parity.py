"""Parity with the upstream packages: same checkpoint file, same speech -> same codes, same audio.

Every reference comes from the upstream package, never from slmtok: each upstream model is built with
random weights (EnCodec 24 and 48 kHz at their published sizes through ``EncodecModel.encodec_model_24khz``
/ ``encodec_model_48khz``; the others narrow, through the upstream classes), saved in the upstream's own
format, then loaded by slmtok with ``checkpoint=`` and through a ``file://`` card with its sha256. The
upstream side always loads and runs through the package's own API (``EncodecModel.encode/decode`` with
``set_target_bandwidth``, ``DAC.load`` + ``preprocess/encode``, ``SpeechTokenizer.load_from_checkpoint`` +
``encode/decode``), on the exact signal slmtok feeds its model (real speech converted from 8, 16 or
44.1 kHz by ``slmtok.audio.prepare``).

The condition tested, exactly: with torch on one thread (a module fixture sets it and restores it), the
codes equal upstream's at every frame (0 differing frames) and the audio matches to 1e-5 (EnCodec 48 kHz:
bit for bit). With upstream on two threads, a frame may differ only where upstream's own codes change
between one and two threads, and only at a near-tie (``assert_only_thread_near_ties``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import slmtok
from slmtok import hub
from slmtok.audio import prepare, resample
from slmtok.codecs import standins
from slmtok.corpora import asterisk_prompts

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Both sides run on one thread: the same kernels, and fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def utterances() -> list[torch.Tensor]:
    """Four real utterances at 16 kHz of 2.2, 1.7, 1.3 and 0.9 s, from three talkers (``[T]`` each)."""
    out = []
    for language, seconds in (("en", 2.2), ("fr", 1.7), ("it", 1.3), ("en", 0.9)):
        n = int(seconds * 16000)
        for path in asterisk_prompts(language)[len(out) * 7 :]:
            wav, rate = slmtok.read_audio(path)
            if rate == 16000 and wav.shape[-1] >= n:
                out.append(wav[0, :n])
                break
    assert len(out) == 4
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A private slmtok cache for the module (``SLMTOK_HOME``)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLMTOK_HOME", str(path))
        yield path


def assert_same_codes(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """``ours``/``theirs`` ``[K, T]``, upstream on one torch thread: equal at every frame."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    frames = (ours != theirs).any(dim=0).nonzero().flatten().tolist()
    assert not frames, f"{len(frames)} of {ours.shape[-1]} frames differ from upstream (first: {frames[:5]})"


def assert_only_near_ties(ours: torch.Tensor, theirs: torch.Tensor, gap) -> int:
    """``ours``/``theirs`` ``[K, T]``: equal except where upstream's decision was a near-tie.

    slmtok's EnCodec 24 kHz encoder runs on position-stable kernels (``slmtok.codecs.stable``: the same
    sums as upstream's kernels, in another order), so a latent can differ from upstream's by float32
    rounding (~1e-7) and flip a decision between two codewords that are that close to equidistant (later
    codebooks at that frame then follow from another residual). At each differing frame, the first
    differing codebook ``q`` must be such a near-tie: ``gap(t, q, theirs, ours)`` below 1e-5 (see
    ``assert_only_thread_near_ties``). Returns the number of differing frames."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    frames = (ours != theirs).any(dim=0).nonzero().flatten().tolist()
    for t in frames:
        q = int((ours[:, t] != theirs[:, t]).nonzero()[0])
        relative = gap(t, q, int(theirs[q, t]), int(ours[q, t]))
        assert relative < 1e-5, (
            f"frame {t}, codebook {q}: codes differ by more than a near-tie ({relative:.2e})"
        )
    return len(frames)


def assert_only_thread_near_ties(ours: torch.Tensor, multi: torch.Tensor, single: torch.Tensor, gap) -> int:
    """``ours`` against upstream's codes on two threads (``multi``) and on one (``single``), ``[K, T]``.

    slmtok runs each piece on one intra-op thread whatever torch's setting; upstream's kernels round
    differently on two threads, which can flip a decision between two codewords that are equidistant to
    ~1e-7 (later codebooks at that frame then follow from another residual). A frame may differ from
    ``multi`` only if upstream itself gives it another code on one thread (there equal to ours) and the
    decision was a near-tie: ``gap(t, q, a, b)``, the smallest relative change of upstream's latent that
    swaps codewords ``a`` and ``b`` at frame ``t``, codebook ``q`` (or the relative size to which the float32
    distances cancel, ``_flip_size``), is below 1e-5 (100x rounding, far below any real discrepancy).
    Returns the number of such frames."""
    assert ours.shape == multi.shape == single.shape
    frames = (ours != multi).any(dim=0).nonzero().flatten().tolist()
    for t in frames:
        assert torch.equal(ours[:, t], single[:, t]), f"frame {t} differs from upstream on one thread too"
        q = int((ours[:, t] != multi[:, t]).nonzero()[0])
        relative = gap(t, q, int(multi[q, t]), int(ours[q, t]))
        assert relative < 1e-5, (
            f"frame {t}, codebook {q}: codes differ by more than a near-tie ({relative:.2e})"
        )
    return len(frames)


@pytest.fixture
def two_threads():
    """Upstream on two torch threads for one test (slmtok's pieces still run on one each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def init_upstream_codebooks(model, frames: torch.Tensor, seed: int = 0) -> None:
    """Give an upstream EnCodec model's codebooks trained-looking values: stage by stage, Gaussian codewords
    with the mean and per-dimension spread of the residual latents ``frames [N, D]``, marked initialised."""
    g = torch.Generator().manual_seed(seed)
    residual = frames.clone()
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        embed = residual.mean(0) + residual.std(0).clamp_min(1e-4) * torch.randn(
            book.embed.shape, generator=g
        )
        book.embed.copy_(embed)
        book.embed_avg.copy_(embed)
        book.cluster_size.fill_(1.0)
        book.inited.fill_(1.0)
        residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


def _flip_size(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> float:
    """How near ``x`` is to equidistant from codewords ``a`` and ``b``, relative to rounding (float64):
    the smaller of the smallest ``|dx| / |x|`` that makes them equidistant, and the difference of the two
    squared distances relative to ``|x|^2 + |a|^2 + |b|^2``, the terms that the float32 distance
    ``|x|^2 - 2 x.e + |e|^2`` cancels (two codewords much closer to each other than to ``x`` can tie there
    although no small change of ``x`` separates them). ``scale`` converts the first to a change relative
    to another vector (a residual's latent)."""
    x, a, b = x.double(), a.double(), b.double()
    gap = abs(((x - a) ** 2).sum() - ((x - b) ** 2).sum())
    moved = gap / (2 * (a - b).norm() * x.norm()).clamp_min(1e-30)
    cancelled = gap / (x.pow(2).sum() + a.pow(2).sum() + b.pow(2).sum()).clamp_min(1e-30)
    return float(min(moved * scale, cancelled))


def euclidean_gap(latent: torch.Tensor, books: list[torch.Tensor], theirs: torch.Tensor):
    """``gap`` for EnCodec / SpeechTokenizer: upstream latent ``[D, T]``, codebooks ``[bins, D]`` each."""

    def gap(t: int, q: int, a: int, b: int) -> float:
        residual = latent[:, t] - sum(books[j][theirs[j, t]] for j in range(q))
        return _flip_size(residual, books[q][a], books[q][b], float(residual.norm() / latent[:, t].norm()))

    return gap


def dac_gap(model, latent: torch.Tensor, theirs: torch.Tensor):
    """``gap`` for DAC: distances between l2-normalised projections, residuals as upstream."""

    def gap(t: int, q: int, a: int, b: int) -> float:
        with torch.inference_mode():
            residual = latent[None, :, t : t + 1]
            for j in range(q):
                vq = model.quantizer.quantizers[j]
                residual = residual - vq.out_proj(vq.codebook.weight[theirs[j, t]][None, :, None])
            vq = model.quantizer.quantizers[q]
            e = torch.nn.functional.normalize(vq.in_proj(residual)[0, :, 0], dim=0)
            book = torch.nn.functional.normalize(vq.codebook.weight, dim=1)
        return _flip_size(e, book[a], book[b])

    return gap


def model_input(tok, wav: torch.Tensor, rate: int) -> torch.Tensor:
    """The ``[1, C, T]`` signal slmtok hands its model for ``wav`` at ``rate``."""
    return prepare(wav, rate, target_rate=tok.card.sample_rate, target_channels=tok.card.channels).wav


def file_card(tmp_path, name: str, files: dict[str, object], sha256: bool = True) -> str:
    """A card for ``name`` whose files are ``file://`` URLs of local files (role -> path)."""
    lines = [
        f'name = "{name}-local"',
        'title = "local stand-in"',
        f'family = "{"hybrid" if name == "speechtokenizer" else "codec"}"',
        'license = "test"',
        'source = "https://example.org"',
        "sample_rate = 16000",
    ]
    for role, path in files.items():
        digest = hub.sha256_file(path) if sha256 else "0" * 64
        lines += [
            "[[files]]",
            f'filename = "{path.name}"',
            f'url = "{path.as_uri()}"',
            f'sha256 = "{digest}"',
        ]
        lines.append(f'role = "{role}"')
    card = tmp_path / f"{name}-local.toml"
    card.write_text("\n".join(lines) + "\n")
    return str(card)


# ------------------------------------------------------------------------------------------ EnCodec
@pytest.fixture(scope="module")
def encodec24(tmp_path_factory):
    """EnCodec 24 kHz at its published size, from the package's own factory, codebooks initialised."""
    from encodec import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    with torch.no_grad():
        init_upstream_codebooks(model, model.encoder(standins.probe_signal(24000, 12))[0].T)
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz-00000000.th"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_encodec_24khz_codes_and_audio_match_upstream(encodec24, utterances, rate):
    model, path = encodec24
    tok = slmtok.load("encodec-24khz", checkpoint=str(path))
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    wav = resample(utterances[0], 16000, rate)
    x = model_input(tok, wav, rate)
    for bandwidth, k in ((1.5, 2), (24.0, 32)):
        model.set_target_bandwidth(bandwidth)
        with torch.inference_mode():
            (codes, scale), *rest = model.encode(x)
        assert not rest and scale is None
        tokens = tok.encode(wav, rate, n_codebooks=k)
        assert tokens.n_codebooks == k and tokens.codes.shape == codes.shape
        with torch.inference_mode():
            latent = model.encoder(x)[0]
        ties = assert_only_near_ties(tokens.codes[0], codes[0], euclidean_gap(latent, books, codes[0]))
        assert ties <= 0.02 * codes.shape[-1]  # measured: 2 of 165 frames at 8 kHz, none at 16 / 44.1
        with torch.inference_mode():
            reference = model.decode([(tokens.codes, None)])  # upstream decode of the same codes
        torch.testing.assert_close(tok.decode(tokens).wav, reference, rtol=0, atol=1e-5)
        assert (
            slmtok.load("encodec-24khz", checkpoint=str(path), n_codebooks=k).card.bitrate == bandwidth * 1000
        )


def test_encodec_24khz_batch_matches_upstream_per_file(encodec24, utterances):
    model, path = encodec24
    tok = slmtok.load("encodec-24khz", checkpoint=str(path))
    lengths = [x.numel() for x in utterances]
    tokens = tok.encode(slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths)
    model.set_target_bandwidth(6.0)
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    for i, x in enumerate(utterances):
        with torch.inference_mode():
            ((codes, _),) = model.encode(model_input(tok, x, 16000))
            latent = model.encoder(model_input(tok, x, 16000))[0]
        assert tokens.lengths[i] == codes.shape[-1] == math.ceil(lengths[i] * 1.5 / 320)
        assert torch.equal(tokens.item(i), tok.encode(x, 16000).codes[0])  # batch == alone, bit for bit
        assert_only_near_ties(tokens.item(i), codes[0], euclidean_gap(latent, books, codes[0]))


def test_encodec_24khz_on_two_threads_differs_only_at_upstreams_own_near_ties(
    encodec24, utterances, two_threads
):
    model, path = encodec24
    tok = slmtok.load("encodec-24khz", checkpoint=str(path))
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    model.set_target_bandwidth(24.0)
    for x in utterances:
        tokens = tok.encode(x, 16000, n_codebooks=32)
        wav = model_input(tok, x, 16000)
        with torch.inference_mode():
            ((multi, _),) = model.encode(wav)
            latent = model.encoder(wav)[0]
        assert_only_near_ties(tokens.item(0), multi[0], euclidean_gap(latent, books, multi[0]))


@pytest.fixture(scope="module")
def encodec48(tmp_path_factory):
    """EnCodec 48 kHz at its published size, from the package's own ``encodec_model_48khz(pretrained=False)``,
    codebooks initialised from its latents, saved as the publisher ships it (a ``.th`` state dict)."""
    from encodec import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel.encodec_model_48khz(pretrained=False)
    x = standins.probe_signal(48000, 2, channels=2)
    with torch.no_grad():
        frames = torch.cat(
            [
                model.encoder(x[..., i : i + 48000] / x[..., i : i + 48000].pow(2).mean().sqrt())[0].T
                for i in (0, 48000)
            ]
        )
        init_upstream_codebooks(model, frames)
    path = tmp_path_factory.mktemp("encodec48") / "encodec_48khz-00000000.th"
    torch.save(model.state_dict(), path)
    model.set_target_bandwidth(12.0)
    return model, path


#: lengths (samples at 48 kHz) around the segment boundaries: one segment; a stride (47520) plus a little,
#: where a non-final segment has 149 frames and the last 1 (47600 and 95140 are the reported ones); a full
#: first segment followed by a short one; two strides and a bit.
ENCODEC48_LENGTHS = [321, 47520, 47521, 47600, 48000, 95040, 95140, 95521]


def speech_48k_stereo(utterances, n: int) -> torch.Tensor:
    """``[2, n]``: real speech at 48 kHz, the right channel a delayed, quieter copy (so channels differ)."""
    wav = resample(torch.cat(utterances), 16000, 48000)
    wav = wav.repeat(1 + n // wav.numel())[:n]
    return torch.stack([wav, 0.7 * torch.roll(wav, 97)])


def test_encodec_48khz_segments_codes_and_audio_equal_upstream_for_every_length(encodec48, utterances):
    """One batch of all ``ENCODEC48_LENGTHS``; each item against upstream's ``encode`` / ``decode`` of it
    alone (one thread): the same segments (frames and scale each), the same codes, the same audio bits."""
    model, path = encodec48
    tok = slmtok.load("encodec-48khz", checkpoint=str(path))
    items = [speech_48k_stereo(utterances, n) for n in ENCODEC48_LENGTHS]
    tokens = tok.encode(slmtok.batching.pad_stack(items), 48000, lengths=ENCODEC48_LENGTHS, n_codebooks=8)
    audio = tok.decode(tokens)
    for i, x in enumerate(items):
        with torch.inference_mode():
            frames = model.encode(x[None])
            reference = model.decode(frames)
        assert len(frames) == math.ceil(x.shape[-1] / model.segment_stride)
        codes = torch.cat([c[0] for c, _ in frames], dim=-1)
        assert_same_codes(tokens.item(i), codes)
        n = codes.shape[-1]
        scale = torch.cat([s.view(1).expand(c.shape[-1]) for c, s in frames])
        segment = torch.cat([torch.full((c.shape[-1],), j) for j, (c, _) in enumerate(frames)])
        assert torch.equal(tokens.extras["scale"][i, 0, :n], scale)
        assert torch.equal(tokens.extras["segment"][i, 0, :n], segment)
        assert int(audio.lengths[i]) == reference.shape[-1]
        assert torch.equal(audio.item(i), reference[0]), f"length {ENCODEC48_LENGTHS[i]}: audio differs"


def test_encodec_48khz_decodes_upstreams_own_frames(encodec48, utterances):
    """Tokens built by hand from upstream's ``encode`` output (its frames and scales, in the documented
    layout) decode to upstream's ``decode`` of those frames; a cut, re-numbered or mis-scaled layout is
    refused with a one-line ``CodesError``."""
    from slmtok.errors import CodesError
    from slmtok.types import Tokens

    model, path = encodec48
    tok = slmtok.load("encodec-48khz", checkpoint=str(path))
    x = speech_48k_stereo(utterances, 95140)[None]
    with torch.inference_mode():
        frames = model.encode(x)
        reference = model.decode(frames)
    assert [c.shape[-1] for c, _ in frames] == [150, 149, 1]
    codes = torch.cat([c for c, _ in frames], dim=-1)
    extras = {
        "scale": torch.cat([s.view(1, 1, 1).expand(1, 1, c.shape[-1]) for c, s in frames], dim=-1),
        "segment": torch.cat([torch.full((1, 1, c.shape[-1]), j) for j, (c, _) in enumerate(frames)], dim=-1),
    }
    ref = tok.encode(x[0], 48000).tokenizer
    tokens = Tokens(codes, torch.tensor([codes.shape[-1]]), tok.card.frame_rate, ref, extras)
    assert torch.equal(tok.decode(tokens).wav, reference)
    bad_segment = extras["segment"].clone()
    bad_segment[..., 150:] = 1  # the last frame joined to the 149-frame segment: 150 + 150 frames
    bad_segment[..., 140:150] = 1  # segment 0 would end early
    renumbered = extras["segment"] + 1
    bad_scale = extras["scale"].clone()
    bad_scale[..., 10] *= 2
    for changed in (
        {"segment": bad_segment},
        {"segment": renumbered},
        {"scale": bad_scale},
        {"scale": -extras["scale"]},
    ):
        with pytest.raises(CodesError):
            tok.decode(Tokens(codes, tokens.lengths, tokens.frame_rate, ref, {**extras, **changed}))
    empty = tok.decode(Tokens(codes, torch.tensor([0]), tokens.frame_rate, ref, extras))
    assert empty.wav.shape == (1, 2, 0) and int(empty.lengths[0]) == 0
    with pytest.raises(CodesError, match="segment layout"):
        tok.decode(Tokens(codes, tokens.lengths, tokens.frame_rate, ref, {"scale": extras["scale"]}))


def test_encodec_48khz_on_two_threads_differs_only_at_upstreams_own_near_ties(
    encodec48, utterances, two_threads
):
    model, path = encodec48
    tok = slmtok.load("encodec-48khz", checkpoint=str(path))
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    x = speech_48k_stereo(utterances, 95140)
    tokens = tok.encode(x, 48000, n_codebooks=8)
    with torch.inference_mode():
        multi = model.encode(x[None])
        torch.set_num_threads(1)
        single = model.encode(x[None])
        torch.set_num_threads(2)
    start = 0
    for index, ((m, _), (s, _)) in enumerate(zip(multi, single, strict=True)):
        n = m.shape[-1]
        latent = _encodec48_latent(model, x[None], index)
        ours = tokens.codes[0, :, start : start + n]
        assert_only_thread_near_ties(ours, m[0], s[0], euclidean_gap(latent, books, m[0]))
        start += n


def _encodec48_latent(model, x: torch.Tensor, index: int) -> torch.Tensor:
    """Upstream latent ``[D, T]`` of segment ``index`` of ``x``, normalised as ``_encode_frame`` does."""
    offset = index * model.segment_stride
    segment = x[:, :, offset : offset + model.segment_length]
    mono = segment.mean(dim=1, keepdim=True)
    scale = 1e-8 + mono.pow(2).mean(dim=2, keepdim=True).sqrt()
    with torch.inference_mode():
        return model.encoder(segment / scale)[0]


# ------------------------------------------------------------------------------------------ DAC
@pytest.fixture(scope="module", params=["16khz", "24khz", "44khz"])
def dac_checkpoint(request, tmp_path_factory):
    return request.param, standins.write_dac(
        tmp_path_factory.mktemp("dac") / f"weights_{request.param}.pth", request.param
    )


def test_dac_codes_and_audio_match_upstream(dac_checkpoint, utterances):
    import dac

    rate, path = dac_checkpoint
    model = dac.DAC.load(str(path)).eval()  # the upstream loader
    tok = slmtok.load(f"dac-{rate}", checkpoint=str(path))
    assert tok.card.max_codebooks == model.n_codebooks
    for i, source_rate in enumerate((8000, 16000, 44100)):
        wav = resample(utterances[i], 16000, source_rate)
        x = model_input(tok, wav, source_rate)
        k = max(1, model.n_codebooks // (i + 1))
        with torch.inference_mode():
            z, codes, *_ = model.encode(model.preprocess(x, model.sample_rate), n_quantizers=k)
        tokens = tok.encode(wav, source_rate, n_codebooks=k)
        assert_same_codes(tokens.codes[0], codes[0])
        with torch.inference_mode():
            reference = model.decode(model.quantizer.from_codes(tokens.codes)[0])
        audio = tok.decode(tokens)
        assert audio.wav.shape == reference.shape
        torch.testing.assert_close(audio.wav, reference, rtol=0, atol=1e-5)


def test_dac_on_two_threads_differs_only_at_upstreams_own_near_ties(dac_checkpoint, utterances, two_threads):
    import dac

    rate, path = dac_checkpoint
    model = dac.DAC.load(str(path)).eval()
    tok = slmtok.load(f"dac-{rate}", checkpoint=str(path))
    for x in utterances[:2]:
        tokens = tok.encode(x, 16000)
        with torch.inference_mode():
            audio = model.preprocess(model_input(tok, x, 16000), model.sample_rate)
            _, multi, *_ = model.encode(audio)
            latent = model.encoder(audio)[0]
            torch.set_num_threads(1)
            _, single, *_ = model.encode(audio)
            torch.set_num_threads(2)
        assert_only_thread_near_ties(tokens.item(0), multi[0], single[0], dac_gap(model, latent, multi[0]))


def test_dac_batch_matches_upstream_per_file(dac_checkpoint, utterances):
    import dac

    rate, path = dac_checkpoint
    model = dac.DAC.load(str(path)).eval()
    tok = slmtok.load(f"dac-{rate}", checkpoint=str(path))
    lengths = [x.numel() for x in utterances]
    tokens = tok.encode(slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths)
    for i, x in enumerate(utterances):
        with torch.inference_mode():
            audio = model.preprocess(model_input(tok, x, 16000), model.sample_rate)
            _, codes, *_ = model.encode(audio)
        assert_same_codes(tokens.item(i), codes[0])


def test_dac_chunked_codes_equal_whole_input_codes(dac_checkpoint, utterances):
    rate, path = dac_checkpoint
    whole = slmtok.load(f"dac-{rate}", checkpoint=str(path))
    chunked = slmtok.load(f"dac-{rate}", checkpoint=str(path))
    chunked.chunk_frames = 7  # many cores, each with the receptive field as context
    wav = torch.cat(utterances)
    a, b = whole.encode(wav, 16000), chunked.encode(wav, 16000)
    assert b.codes.shape[-1] > 4 * (chunked.chunk_frames + 2 * chunked.encode_context)
    assert torch.equal(a.codes, b.codes)
    torch.testing.assert_close(chunked.decode(a).wav, whole.decode(a).wav, rtol=0, atol=1e-5)


def test_dac_checkpoint_needing_pickle_needs_trust_or_a_verified_card(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    path = standins.write_dac(tmp_path / "weights.pth", "16khz")
    blob = torch.load(path, weights_only=True)
    blob["metadata"]["input_db"] = np.float64(-16.0)  # a numpy scalar: weights_only refuses it
    torch.save(blob, path)
    with pytest.raises(hub.UntrustedCheckpointError, match="trust=True"):
        slmtok.load("dac-16khz", checkpoint=str(path))
    trusted = slmtok.load("dac-16khz", checkpoint=str(path), trust=True)
    verified = slmtok.load("dac-16khz", card=file_card(tmp_path, "dac-16khz", {"weights": path}))
    assert trusted.card.hash == verified.card.hash


# ------------------------------------------------------------------------------------------ SpeechTokenizer
@pytest.fixture(scope="module")
def speechtokenizer_files(tmp_path_factory):
    return standins.write_speechtokenizer(tmp_path_factory.mktemp("speechtokenizer"))


def test_speechtokenizer_codes_and_audio_match_upstream(speechtokenizer_files, utterances):
    from speechtokenizer import SpeechTokenizer

    config, weights = speechtokenizer_files
    model = SpeechTokenizer.load_from_checkpoint(str(config), str(weights)).eval()
    tok = slmtok.load("speechtokenizer", checkpoint=(str(config), str(weights)))
    folder = slmtok.load("speechtokenizer", checkpoint=str(config.parent))
    assert folder.card.hash == tok.card.hash and tok.card.semantic_codebooks == (0,)
    for i, rate in enumerate((8000, 16000, 44100)):
        wav = resample(utterances[i], 16000, rate)
        x = model_input(tok, wav, rate)
        k = (1, 3, 8)[i]
        with torch.inference_mode():
            codes = model.encode(x, n_q=k)  # [K, B, T]
        tokens = tok.encode(wav, rate, n_codebooks=k)
        assert_same_codes(tokens.codes[0], codes[:, 0])
        with torch.inference_mode():
            reference = model.decode(tokens.codes.transpose(0, 1))
        torch.testing.assert_close(tok.decode(tokens).wav, reference, rtol=0, atol=1e-5)
    lengths = [x.numel() for x in utterances]
    batch = tok.encode(slmtok.batching.pad_stack([x[None] for x in utterances]), 16000, lengths=lengths)
    for i, x in enumerate(utterances):
        with torch.inference_mode():
            codes = model.encode(model_input(tok, x, 16000))
        assert_same_codes(batch.item(i), codes[:, 0])


def test_speechtokenizer_on_two_threads_differs_only_at_upstreams_own_near_ties(
    speechtokenizer_files, utterances, two_threads
):
    from speechtokenizer import SpeechTokenizer

    config, weights = speechtokenizer_files
    model = SpeechTokenizer.load_from_checkpoint(str(config), str(weights)).eval()
    tok = slmtok.load("speechtokenizer", checkpoint=(str(config), str(weights)))
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    for x in utterances[:2]:
        tokens = tok.encode(x, 16000)
        wav = model_input(tok, x, 16000)
        with torch.inference_mode():
            multi = model.encode(wav)[:, 0]  # [K, T]
            latent = model.encoder(wav)[0]
            torch.set_num_threads(1)
            single = model.encode(wav)[:, 0]
            torch.set_num_threads(2)
        assert_only_thread_near_ties(tokens.item(0), multi, single, euclidean_gap(latent, books, multi))


# ------------------------------------------------------------------------------------------ cards
def test_file_card_loads_the_same_weights_and_a_bad_checksum_is_refused(
    tmp_path, monkeypatch, speechtokenizer_files, encodec48
):
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    config, weights = speechtokenizer_files
    card = file_card(tmp_path, "speechtokenizer", {"config": config, "weights": weights})
    via_card = slmtok.load("speechtokenizer", card=card)
    direct = slmtok.load("speechtokenizer", checkpoint=(str(config), str(weights)))
    assert via_card.card.hash == direct.card.hash
    assert (tmp_path / "home" / "hub" / "speechtokenizer-local" / "SpeechTokenizer.pt").is_file()
    assert json.loads(json.dumps(via_card.ref.options)) == {"card": card}
    _, path = encodec48
    good = slmtok.load("encodec-48khz", card=file_card(tmp_path, "encodec-48khz", {"weights": path}))
    assert good.card.hash == slmtok.load("encodec-48khz", checkpoint=str(path)).card.hash
    bad = (
        file_card(tmp_path / "bad", "encodec-48khz", {"weights": path}, sha256=False)
        if ((tmp_path / "bad").mkdir() or True)
        else None
    )
    with pytest.raises(hub.ChecksumError):
        slmtok.load("encodec-48khz", card=bad)


def test_untrained_encodec_checkpoint_is_refused(tmp_path):
    from encodec import EncodecModel

    from slmtok.codecs.loading import CheckpointError

    path = tmp_path / "untrained.th"
    torch.save(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), path)  # codebooks all zero
    with pytest.raises(CheckpointError, match="never initialised"):
        slmtok.load("encodec-24khz", checkpoint=str(path))
