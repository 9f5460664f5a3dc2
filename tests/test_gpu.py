"""GPU paths on a CUDA device (issue #13): run with ``pytest -m gpu`` (skipped by default, and skipped here
with a reason when ``torch.cuda.is_available()`` is false). ``benchmarks/gpu_suite.py`` runs them too.

References, none taken from slmtok's own result on the same path:
- batch == single: the same tokenizer on each item alone (the contract the README states);
- codecs: the upstream package (``dac``) called per file on the same device and weights;
- k-means: ground-truth blob labels (``sklearn.datasets.make_blobs``) and float64 NumPy distances;
- HuBERT near-ties: float64 NumPy argmin over rows built exactly on a tie between two centroids;
- LM: the entropy of a known Markov chain (log 2 nats per token) and the unigram baseline;
- encode-corpus: the file encoded alone on the GPU, and the mu-law formula (mu = 255) written here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import slmtok

from .conformance import LOAD_OPTIONS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
    ),
]

OFFLINE = ("mel-rvq", "mfcc-km", "mulaw-8bit")
CODECS = (
    "encodec-24khz",
    "encodec-48khz",
    "dac-16khz",
    "dac-24khz",
    "dac-44khz",
    "speechtokenizer",
    "snac-24khz",
)
#: at most this share of frames may differ between a stacked CUDA batch and single items (rounding)
STACKED_TOLERANCE = 0.01


def _load(name: str, tmp_path, **extra) -> slmtok.Tokenizer:
    return slmtok.load(name, device="cuda", **LOAD_OPTIONS[name](tmp_path), **extra)


def _differing_frames(batch, singles) -> tuple[int, int]:
    frames = differing = 0
    for i, alone in enumerate(singles):
        a, b = batch.item(i).cpu(), alone.item(0).cpu()
        assert a.shape == b.shape, f"item {i}: {tuple(a.shape)} batched vs {tuple(b.shape)} alone"
        frames += a.shape[-1]
        differing += int((a != b).any(dim=0).sum())
    return differing, frames


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_tokenizer_batch_equals_single_on_cuda(name, tmp_path, speech_batch):
    tok = _load(name, tmp_path)
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    for i in range(3):
        alone = tok.encode(wav[i, :, : int(lengths[i])], 16000)
        assert torch.equal(batch.item(i).cpu(), alone.item(0).cpu()), f"{name}: item {i} differs when batched"


@pytest.mark.parametrize("name", CODECS)
def test_codec_exact_mode_batch_equals_single_on_cuda(name, tmp_path, speech_batch):
    """``stack_batches=False``: each item runs alone at its canonical width, so batch == single exactly."""
    tok = _load(name, tmp_path)
    tok.stack_batches = False
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    singles = [tok.encode(wav[i, :, : int(lengths[i])], 16000) for i in range(3)]
    assert _differing_frames(batch, singles)[0] == 0


@pytest.mark.parametrize("name", CODECS)
def test_codec_stacked_batches_on_cuda_differ_from_single_only_by_rounding(name, tmp_path, speech_batch):
    """The CUDA default stacks pieces: equal to single items up to rounding, i.e. a rare near-tie frame."""
    tok = _load(name, tmp_path)
    tok.stack_batches = True
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    singles = [tok.encode(wav[i, :, : int(lengths[i])], 16000) for i in range(3)]
    differing, frames = _differing_frames(batch, singles)
    print(f"{name}: {differing} of {frames} frames differ between a stacked CUDA batch and single items")
    assert differing <= STACKED_TOLERANCE * frames


def test_dac_on_cuda_matches_the_dac_package_per_file(tmp_path, speech_batch):
    """Reference: ``dac.DAC.load`` + ``preprocess`` + ``encode`` on the same CUDA device and weights."""
    import dac

    from slmtok.audio import prepare

    options = LOAD_OPTIONS["dac-16khz"](tmp_path)
    tok = slmtok.load("dac-16khz", device="cuda", **options)
    tok.stack_batches = False
    model = dac.DAC.load(options["checkpoint"]).to("cuda").eval()
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    frames = differing = 0
    with torch.inference_mode():
        for i in range(3):
            x = prepare(wav[i, :, : int(lengths[i])], 16000, target_rate=16000, target_channels=1).wav
            codes = model.encode(model.preprocess(x.cuda(), 16000), n_quantizers=tok.card.n_codebooks)[1][0]
            ours = batch.item(i).cpu()
            assert ours.shape == codes.shape
            frames += codes.shape[-1]
            differing += int((ours != codes.cpu()).any(dim=0).sum())
    # different kernel shapes (canonical width vs the file's) round differently: only near-ties may flip
    assert differing <= STACKED_TOLERANCE * frames, (
        f"{differing} of {frames} frames differ from the dac package"
    )


def test_faiss_gpu_kmeans_runs_on_the_gpu_and_finds_the_blobs():
    """Reference: the blobs' true labels (well separated: a correct k-means recovers them)."""
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    import slmtok.kmeans as kmeans

    x, truth = make_blobs(n_samples=20_000, n_features=64, centers=20, cluster_std=0.5, random_state=0)
    x = x.astype(np.float32)
    km = kmeans.fit(x, 20, backend="faiss", device="cuda", seed=0, n_iter=25)
    assert km.info["device"] == "cuda", "FAISS fell back to the CPU: faiss.get_num_gpus() is 0 beside torch"
    labels = km.to("cuda").assign(torch.from_numpy(x).cuda()).cpu().numpy()
    assert adjusted_rand_score(truth, labels) > 0.99


def test_torch_kmeans_backend_fits_on_cuda():
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    import slmtok.kmeans as kmeans

    x, truth = make_blobs(n_samples=20_000, n_features=64, centers=20, cluster_std=0.5, random_state=0)
    km = kmeans.fit(x.astype(np.float32), 20, backend="torch", device="cuda", seed=0, n_iter=25)
    labels = km.assign(torch.from_numpy(x.astype(np.float32))).numpy()
    assert adjusted_rand_score(truth, labels) > 0.99


def test_assign_on_cuda_equals_float64_numpy_with_near_ties_re_decided():
    """Rows placed on the bisector of two centroids (plus 1e-6 relative offsets either way): float32
    products on the GPU cannot tell them apart, the float64 re-check must; reference: NumPy float64."""
    from slmtok.kmeans import KMeans, nearest_with_margin

    rng = np.random.default_rng(0)
    c = rng.standard_normal((50, 768)).astype(np.float64) * 3
    mid = (c[0] + c[1]) / 2
    direction = (c[1] - c[0]) / np.linalg.norm(c[1] - c[0])
    offsets = np.linspace(-1e-3, 1e-3, 257)
    ties = mid + offsets[:, None] * direction
    x = np.concatenate([ties, rng.standard_normal((4000, 768)) * 3]).astype(np.float32)
    c32 = c.astype(np.float32)
    reference = ((x.astype(np.float64)[:, None, :] - c32.astype(np.float64)[None]) ** 2).sum(-1).argmin(1)
    labels = KMeans(torch.from_numpy(c32)).to("cuda").assign(torch.from_numpy(x).cuda()).cpu().numpy()
    assert (labels == reference).all()
    _, margin = nearest_with_margin(torch.from_numpy(x).cuda(), torch.from_numpy(c32).cuda())
    assert float(margin[:257].min()) < 1e-4  # the ties really were ties for float32


def test_hubert_units_batched_on_cuda_equal_single(tmp_path, speech_batch):
    """A published bundle (random HuBERT, scikit-learn k-means, unit vocoder stand-ins) on CUDA batches its
    features; frames near a tie are re-decided on their item alone, so batch == single exactly."""
    name = "hubert-base-l6-km100"
    tok = _load(name, tmp_path)
    wav, lengths = speech_batch
    batch = tok.encode(wav, 16000, lengths=lengths)
    singles = [tok.encode(wav[i, :, : int(lengths[i])], 16000) for i in range(3)]
    assert _differing_frames(batch, singles)[0] == 0
    feats, frames = tok.features.extract(wav[:, 0].cuda(), lengths)
    for i in range(3):
        alone = tok.features(wav[i, 0, : int(lengths[i])].cuda())
        assert torch.allclose(feats[i, : int(frames[i])], alone, atol=1e-3, rtol=1e-3)


def test_lm_training_step_in_bf16_autocast_on_cuda(tmp_path):
    """Reference: a Markov chain of 1 bit (log 2 nats) per token; a trained LM must get near it."""
    from slmtok.lm import checkpoint as ckpt
    from slmtok.lm.training import train

    from .test_lm_train import make_data, markov_utterances

    utterances = markov_utterances()
    manifest = make_data(tmp_path / "data", utterances, pattern="flatten", valid_fraction=0.1)
    unigram_nats = manifest["unigram"]["valid_bits_per_token"] * math.log(2)
    result = train(
        tmp_path / "data", tmp_path / "run", model="tiny", block_size=64, batch_size=8, max_steps=80,
        warmup_steps=5, learning_rate=4e-3, eval_interval=80, save_interval=80, log_interval=40, device="cuda",
    )  # fmt: skip
    val = result.evaluation["val_nats_per_token"]
    assert val < 0.35 * unigram_nats and val > math.log(2) - 0.05
    info = ckpt.checkpoint_info(tmp_path / "run")[1]
    assert info["device_type"] == "cuda"
    assert info["precision"] == ("bf16-autocast" if torch.cuda.is_bf16_supported() else "fp32")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert any("mfu" in r for r in rows if "loss" in r)


def _mulaw_reference(wav: np.ndarray) -> np.ndarray:
    """8-bit mu-law (mu = 255) of ``[-1, 1]`` samples, written here from the formula (float64)."""
    y = np.sign(wav) * np.log1p(255 * np.abs(np.clip(wav, -1, 1))) / np.log1p(255)
    return np.floor((y + 1) / 2 * 255 + 0.5).astype(np.int64)


def test_encode_corpus_with_a_gpu_actor_on_ray(tmp_path):
    """``--engine ray`` on a machine with a GPU: one actor with ``num_gpus=1`` encodes every file, and
    the codes equal each file's codes from the same tokenizer alone on the GPU, and the mu-law formula
    (up to float32 rounding at a quantization boundary: at most 1 sample in 10,000)."""
    ray = pytest.importorskip("ray")
    import soundfile

    from slmtok.corpora import asterisk_prompts
    from slmtok.corpus import encode_corpus, iter_items

    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, path in enumerate(asterisk_prompts("en")[:6]):
        wav, rate = slmtok.read_audio(path)
        soundfile.write(folder / f"u{i}.wav", wav[0].numpy(), rate, subtype="PCM_16")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert ray.cluster_resources().get("GPU", 0) >= 1, "Ray sees no GPU: the actor would run on the CPU"
        summary = encode_corpus([str(folder)], tmp_path / "out", tokenizer="mulaw-8bit", engine="ray",
                                device="cuda", actors=1)  # fmt: skip
    finally:
        ray.shutdown()
    assert summary["engine"] == "ray" and summary["encoded"] == 6
    tok = slmtok.load("mulaw-8bit", device="cuda")
    for row, tokens in iter_items(tmp_path / "out"):
        wav, rate = slmtok.read_audio(folder / f"{row['id']}.wav")
        assert torch.equal(tokens.codes.cpu(), tok.encode(wav, rate).codes.cpu())
        formula = _mulaw_reference(wav[0].double().numpy())
        assert rate == 16000 and np.mean(tokens.codes[0, 0].cpu().numpy() != formula) <= 1e-4
