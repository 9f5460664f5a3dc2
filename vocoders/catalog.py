"""Built-in vocoders of ``slmtok.vocoders`` (names -> lazy import paths)."""

from __future__ import annotations


def register_builtins() -> None:
    from slmtok.registry import VOCODERS

    VOCODERS.register(
        "griffin-lim",
        "slmtok.vocoders.griffin_lim:GriffinLimVocoder",
        description="log-mel -> audio, weight-free",
        origin="builtin",
    )
    VOCODERS.register(
        "hifigan-unit",
        "slmtok.vocoders.unit_hifigan:load_unit_vocoder",
        description="unit HiFi-GAN (speech-resynthesis / fairseq CodeHiFiGAN): g_XXXXXXXX + config.json",
        origin="builtin",
    )
    VOCODERS.register(
        "hifigan",
        "slmtok.vocoders.mel_hifigan:load_mel_vocoder",
        description="mel HiFi-GAN V1/V2/V3 (jik876/hifi-gan generator_v1 + config.json)",
        origin="builtin",
    )
    VOCODERS.register(
        "vocos",
        "slmtok.vocoders.vocos:load_vocos",
        description="Vocos mel vocoder (pip vocos; charactr/vocos-mel-24khz config.yaml + pytorch_model.bin)",
        origin="builtin",
    )
    VOCODERS.register(
        "vocos-encodec",
        "slmtok.vocoders.vocos_encodec:load_vocos_encodec",
        description="Vocos decoder of EnCodec 24 kHz codes (charactr/vocos-encodec-24khz); "
        "slmtok.load('encodec-24khz', vocoder='vocos')",
        origin="builtin",
    )
