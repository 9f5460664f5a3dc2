"""Acoustic RVQ codecs (EnCodec, DAC, SNAC) wrapping the upstream packages behind ``slmtok.Tokenizer``.

- ``encodec`` / ``dac`` / ``snac``: the wrappers (``slmtok.load("encodec-24khz")``, ``"dac-44khz"``,
  ``"snac-24khz"``, ...);
- ``base``: ``ChunkedCodec``, canonical widths, per-item execution, chunking of long input;
- ``ragged``: layer-by-layer rules that give each item of a padded batch exactly its own padding;
- ``loading``: ``checkpoint=`` / hub-card sources, safe loading; ``standins``: random-weight
  checkpoints in each upstream's format, for tests and benchmarks.

SpeechTokenizer (hybrid) lives in ``slmtok.tokenizers.hybrid`` and uses the same machinery.
"""
