"""Tokenizer evaluation metrics, each a plain function on tensors or arrays with its sample rate stated.

- ``slmtok.metrics.rates``: frame rate, tokens/s, nominal / effective (deduplicated) / entropy bitrate,
  codebook utilisation and perplexity, from ``Tokens``.
- ``slmtok.metrics.signal``: delay alignment, SI-SDR, PESQ (wb at 16 kHz, nb at 8 kHz), STOI, ESTOI.
- ``slmtok.metrics.spectral``: log-mel distance, mel-cepstral distortion, F0 RMSE / correlation.
- ``slmtok.metrics.backends``: optional model-based metrics (Whisper WER/CER, resemblyzer speaker
  similarity, DNSMOS, ViSQOL) that report themselves unavailable, with the reason, when they cannot run.
- ``slmtok.metrics.cost``: real-time factors, peak memory, parameter counts, device names.

Submodules are imported on use; nothing heavy is imported with this package.
"""
