"""WavLM / wav2vec 2.0 / XLS-R / mHuBERT-147 features against transformers itself.

Where the references come from: ``transformers.WavLMModel`` / ``Wav2Vec2Model`` / ``HubertModel`` with
tiny random configurations (2 layers, 32 wide; biases and norm gains randomised so that a wrong mapping
shows), written with their own ``save_pretrained``. slmtok loads the folder (by ``checkpoint=`` and through
a ``file://`` hub card) and its layer ``L`` must equal ``model(x, output_hidden_states=True)
.hidden_states[L]`` run by transformers on each item alone (no padding), on real speech. Both run in float32
on the same machine, same code path, so features agree to float rounding (``atol=1e-5``); a padded batch
of a LayerNorm-encoder model differs from the solo run by masked attention rounding only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmtok import hub
from slmtok.errors import SlmtokError
from slmtok.registry import FEATURES
from slmtok.tokenizers.features.transformers_features import VARIANTS, TransformersFeatures

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)

#: variant -> (transformers class, config class, feature-encoder norm)
CASES = {
    "wavlm-base-plus": ("WavLMModel", "WavLMConfig", "group"),
    "wavlm-large": ("WavLMModel", "WavLMConfig", "layer"),
    "wav2vec2-base": ("Wav2Vec2Model", "Wav2Vec2Config", "group"),
    "xlsr-300m": ("Wav2Vec2Model", "Wav2Vec2Config", "layer"),
    "mhubert-147": ("HubertModel", "HubertConfig", "group"),
}


def tiny_model(variant: str, seed: int = 0):
    """A transformers model of ``variant``'s class with a tiny random configuration."""
    import transformers

    model_cls, config_cls, norm = CASES[variant]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(
        **TINY, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer"
    )
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
            elif "norm" in name and p.ndim == 1:
                p.uniform_(0.8, 1.2)
    return model


def reference(model, wav: torch.Tensor, layer: int, normalize: bool) -> torch.Tensor:
    """transformers' ``hidden_states[layer]`` ``[T', D]`` for one item ``[T]`` (zero-mean unit-variance
    first when ``normalize``, as transformers' ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does)."""
    if normalize:
        from transformers import Wav2Vec2FeatureExtractor

        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
        wav = torch.from_numpy(fe(wav.numpy(), sampling_rate=16000, return_tensors="np").input_values[0])
    with torch.inference_mode():
        return model(wav[None], output_hidden_states=True).hidden_states[layer][0]


@pytest.fixture(scope="module", params=list(CASES))
def saved(request, tmp_path_factory) -> tuple[str, object, Path]:
    variant = request.param
    model = tiny_model(variant)
    folder = tmp_path_factory.mktemp(variant)
    model.save_pretrained(folder)
    return variant, model, folder


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_layer_equals_transformers_hidden_states(saved, speech_16k, layer):
    variant, model, folder = saved
    feats = FEATURES.create(variant, checkpoint=folder, layer=layer)
    assert isinstance(feats, TransformersFeatures) and feats.normalize == feats.variant.normalize
    wav = speech_16k[:9000]
    ours = feats(wav)
    theirs = reference(model, wav, layer, feats.normalize)
    assert ours.shape == theirs.shape == (feats.num_frames(9000), 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_batch_equals_single(saved, speech_batch):
    """Each item of a padded batch gets transformers' solo features: exactly for GroupNorm encoders (run
    alone), within masked-attention rounding for LayerNorm encoders (batched with ``attention_mask``)."""
    variant, model, folder = saved
    feats = TransformersFeatures(variant, checkpoint=folder)
    wav, lengths = speech_batch
    out, frames = feats.extract(wav[:, 0], lengths)
    for i, n in enumerate(lengths.tolist()):
        theirs = reference(model, wav[i, 0, :n], 2, feats.normalize)
        assert int(frames[i]) == theirs.shape[0]
        torch.testing.assert_close(out[i, : frames[i]], theirs, atol=2e-5, rtol=1e-5)
        assert not out[i, frames[i] :].any()


def test_preprocessor_config_sets_normalisation(saved, speech_16k):
    variant, model, folder = saved
    from transformers import Wav2Vec2FeatureExtractor

    flipped = not TransformersFeatures(variant, checkpoint=folder).variant.normalize
    Wav2Vec2FeatureExtractor(do_normalize=flipped).save_pretrained(folder)
    try:
        feats = TransformersFeatures(variant, checkpoint=folder, layer=1)
        assert feats.normalize is flipped
        torch.testing.assert_close(
            feats(speech_16k[:6000]), reference(model, speech_16k[:6000], 1, flipped), atol=1e-5, rtol=1e-5
        )
    finally:
        (folder / "preprocessor_config.json").unlink()


def test_loads_through_a_file_card(saved, tmp_path, monkeypatch, speech_16k):
    """The card machinery: ``config`` + ``weights`` fetched from ``file://`` URLs (sha256 checked) into a
    private ``SLMTOK_HOME``, then read from that cache folder."""
    variant, model, folder = saved
    monkeypatch.setenv("SLMTOK_HOME", str(tmp_path / "home"))
    lines = [f'name = "{variant}-local"', 'title = "t"', 'family = "features"', 'license = "test"']
    lines += ['source = "https://example.org"', "sample_rate = 16000"]
    for role, name in (("config", "config.json"), ("weights", "model.safetensors")):
        path = folder / name
        lines += ["[[files]]", f'filename = "{name}"', f'url = "{path.as_uri()}"']
        lines += [f'sha256 = "{hub.sha256_file(path)}"', f'role = "{role}"']
    card = tmp_path / f"{variant}-local.toml"
    card.write_text("\n".join(lines) + "\n")
    feats = TransformersFeatures(variant, card=str(card), layer=2)
    assert Path(feats.checkpoint) == tmp_path / "home" / "hub" / f"{variant}-local"
    wav = speech_16k[:7000]
    torch.testing.assert_close(feats(wav), reference(model, wav, 2, feats.normalize), atol=1e-5, rtol=1e-5)


def test_published_cards_name_their_hub_repos():
    expected = {
        "wavlm-base-plus": ("microsoft/wavlm-base-plus", "MIT"),
        "wavlm-large": ("microsoft/wavlm-large", "MIT"),
        "wav2vec2-base": ("facebook/wav2vec2-base", "Apache-2.0"),
        "xlsr-300m": ("facebook/wav2vec2-xls-r-300m", "Apache-2.0"),
        "mhubert-147": ("utter-project/mHuBERT-147", "CC-BY-NC-SA-4.0"),
    }
    for variant, (repo, licence) in expected.items():
        card = hub.get_card(VARIANTS[variant].card)
        assert {f.hf_repo for f in card.files} == {repo}
        assert {f.role for f in card.files} >= {"config", "weights"} and card.license == licence
        assert variant in FEATURES


def test_wrong_model_type_and_layer_are_one_line_errors(saved, tmp_path):
    variant, _, folder = saved
    other = "wav2vec2-base" if CASES[variant][0] != "Wav2Vec2Model" else "wavlm-base-plus"
    with pytest.raises(SlmtokError, match="checkpoint, not"):
        TransformersFeatures(other, checkpoint=folder)
    with pytest.raises(SlmtokError, match="layers 0 to 2"):
        TransformersFeatures(variant, checkpoint=folder, layer=3)
    with pytest.raises(SlmtokError, match="config.json"):
        TransformersFeatures(variant, checkpoint=tmp_path)
