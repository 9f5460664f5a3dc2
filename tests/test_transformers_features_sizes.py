"""transformers feature extractors refuse a checkpoint of another published variant's size in one line,
before reading any weight (the HuBERT route's ``check_architecture`` does the same for fairseq/torchaudio).

References: the configurations are transformers' own config classes (``WavLMConfig``, ``Wav2Vec2Config``,
``HubertConfig``) with the published sizes (WavLM Large / XLS-R 300M / HuBERT Large: 24 layers, 1024
wide), written with ``to_json_file``; no weights file is written, so a refusal cannot come from loading.
A model of a size no variant has (a tiny random one, saved by transformers) still loads as given.
"""

from __future__ import annotations

import pytest
import torch

from slmtok.errors import SlmtokError
from slmtok.tokenizers.features.transformers_features import TransformersFeatures

LARGE = dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096)


@pytest.mark.parametrize(
    "config_class, variant, fits",
    [
        ("WavLMConfig", "wavlm-base-plus", "wavlm-large"),
        ("Wav2Vec2Config", "wav2vec2-base", "xlsr-300m"),
        ("HubertConfig", "mhubert-147", "hubert-large"),
    ],
)
def test_a_large_checkpoint_is_refused_as_a_base_variant(tmp_path, config_class, variant, fits):
    import transformers

    getattr(transformers, config_class)(**LARGE).to_json_file(tmp_path / "config.json")
    with pytest.raises(SlmtokError) as error:
        TransformersFeatures(variant, checkpoint=tmp_path)
    message = str(error.value)
    assert "\n" not in message and "24-layer, 1024-wide" in message and f"load it as {fits}" in message


def test_a_base_checkpoint_is_refused_as_a_large_variant(tmp_path):
    import transformers

    transformers.WavLMConfig().to_json_file(tmp_path / "config.json")  # transformers' default: Base size
    with pytest.raises(
        SlmtokError, match="12-layer, 768-wide wavlm model, not wavlm-large .*wavlm-base-plus"
    ):
        TransformersFeatures("wavlm-large", checkpoint=tmp_path)


def test_a_size_no_variant_has_loads_as_given(tmp_path):
    import transformers

    config = transformers.WavLMConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37, conv_dim=(16,) * 7
    )
    torch.manual_seed(0)
    transformers.WavLMModel(config).save_pretrained(tmp_path)
    features = TransformersFeatures("wavlm-base-plus", checkpoint=tmp_path)
    assert (features.num_layers, features.dim) == (2, 32)
    assert features(torch.zeros(1600)).shape == (4, 32)
