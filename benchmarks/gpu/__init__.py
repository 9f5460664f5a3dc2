"""Sections of ``benchmarks/gpu_suite.py``: one module per claim (k-means, codecs, LM, HuBERT, corpus)."""
