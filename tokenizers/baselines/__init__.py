"""Embedded baselines that work offline with no download: ``mel-rvq`` (the default), ``mfcc-km``, ``mulaw-8bit``.

Their codebooks were fitted by slmtok's own k-means (``python -m slmtok.tokenizers.baselines.fit``) on the
Asterisk English prompts (one female voice, CC-BY-SA-3.0) and ship in ``weights/`` as safetensors.
"""
