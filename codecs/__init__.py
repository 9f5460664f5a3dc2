"""Acoustic RVQ codecs (EnCodec, DAC, ...) wrapping the upstream packages behind ``slmtok.Tokenizer``."""
