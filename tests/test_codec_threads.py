"""Encoding changes no thread setting of the process, and two threads encoding at once get the right codes.

The reference codes come from the upstream package: ``encodec.EncodecModel.encodec_model_24khz`` (random
weights, codebooks given data-driven values here, saved as a ``.th`` state dict that slmtok loads with
``checkpoint=``), its own ``encode`` at 6 kbps, run on one torch thread (a fixture sets it and restores it).
"""

from __future__ import annotations

import threading

import pytest
import torch

import slmtok
from slmtok.audio import prepare
from slmtok.batching import pad_stack
from slmtok.codecs import threads
from slmtok.corpora import asterisk_prompts

from .test_codec_parity import assert_only_near_ties, euclidean_gap

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning"),
]


@pytest.fixture(scope="module")
def speech() -> list[torch.Tensor]:
    """Four real utterances at 16 kHz (0.5 to 1.4 s), two talkers."""
    out = []
    for language in ("it", "ru"):
        for path in asterisk_prompts(language)[3:]:
            wav, rate = slmtok.read_audio(path)
            if rate == 16000 and wav.shape[-1] >= 22400:
                out.append(wav[0])
            if len(out) in (2, 4):
                break
    return [x[:n] for x, n in zip(out, (22400, 9001, 16000, 8123), strict=True)]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The upstream EnCodec 24 kHz model at its published size, codebooks initialised from its own latents
    (Gaussian codewords with the latents' mean and spread, stage by stage), and its ``.th`` file."""
    from encodec import EncodecModel

    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    with torch.no_grad():
        residual = model.encoder(torch.randn(1, 1, 24000 * 4) * 0.1)[0].T  # [N, D]
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            embed = residual.mean(0) + residual.std(0) * torch.randn_like(book.embed)
            book.embed.copy_(embed)
            book.embed_avg.copy_(embed)
            book.cluster_size.fill_(1.0)
            book.inited.fill_(1.0)
            residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]
    path = tmp_path_factory.mktemp("encodec") / "encodec_24khz.th"
    torch.save(model.state_dict(), path)
    model.set_target_bandwidth(6.0)
    return model, path


@pytest.fixture(scope="module")
def reference(upstream, speech) -> list[torch.Tensor]:
    """Upstream codes ``[8, T]`` of each utterance as slmtok's model input, on one torch thread."""
    model, _ = upstream
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = []
        for x in speech:
            wav = prepare(x, 16000, target_rate=24000, target_channels=1).wav
            with torch.inference_mode():
                ((codes, _),) = model.encode(wav)
            out.append(codes[0])
        return out
    finally:
        torch.set_num_threads(before)


def fresh_thread_count() -> int:
    """``torch.get_num_threads()`` as a thread that starts using torch now sees it."""
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_pool_threads_run_on_one_thread_and_leave_the_caller_alone():
    before, fresh = torch.get_num_threads(), fresh_thread_count()
    seen = threads.map_single_threaded(lambda _: torch.get_num_threads(), range(4), workers=2)
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == before and fresh_thread_count() == fresh


def test_two_threads_encoding_at_once_get_upstream_codes_and_no_thread_setting_changes(
    upstream, speech, reference
):
    """Two Python threads encode different batches with one tokenizer at the same time, several rounds;
    a third thread keeps reading the thread count torch gives it and the one a newly started thread gets.
    Each encode must give exactly the codes each item gets alone, those must be the upstream codes
    (one-thread reference) except at verified near-ties, and no count may change."""
    _, path = upstream
    tok = slmtok.load("encodec-24khz", checkpoint=str(path))
    before, fresh_before = torch.get_num_threads(), fresh_thread_count()
    jobs = [[0, 1], [2, 3, 1]]  # two different batches (several items: the pool runs several groups)
    results: list[list[torch.Tensor]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(3)
    stop = threading.Event()
    observed: list[tuple[int, int]] = []

    def encode(job: int) -> None:
        items = [speech[i] for i in jobs[job]]
        batch = pad_stack([x[None] for x in items])
        try:
            start.wait()
            for _ in range(4):
                tokens = tok.encode(batch, 16000, lengths=[x.numel() for x in items])
                results[job].append([tokens.item(j) for j in range(len(items))])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def observe() -> None:
        torch.get_num_threads()  # this thread is set up before the encodes start
        start.wait()
        while not stop.is_set():
            observed.append((torch.get_num_threads(), fresh_thread_count()))

    watcher = threading.Thread(target=observe)
    workers = [threading.Thread(target=encode, args=(j,)) for j in range(2)]
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    assert len(observed) >= 3
    assert set(observed) == {(before, fresh_before)}, (
        f"thread counts seen during the encodes: {set(observed)}"
    )
    assert torch.get_num_threads() == before and fresh_thread_count() == fresh_before
    model, _ = upstream
    books = [layer._codebook.embed for layer in model.quantizer.vq.layers]
    alone = [tok.encode(x, 16000).codes[0] for x in speech]  # each item alone, no other thread running
    for i, x in enumerate(speech):  # upstream's codes, except at its own near-ties (test_codec_parity)
        with torch.inference_mode():
            latent = model.encoder(prepare(x, 16000, target_rate=24000, target_channels=1).wav)[0]
        assert_only_near_ties(alone[i], reference[i], euclidean_gap(latent, books, reference[i]))
    for job, indices in enumerate(jobs):
        for round_codes in results[job]:
            for codes, i in zip(round_codes, indices, strict=True):
                assert torch.equal(codes, alone[i]), f"item {i} of batch {job}"
