"""Hybrid tokenizers: codecs whose first codebook carries content (SpeechTokenizer)."""
