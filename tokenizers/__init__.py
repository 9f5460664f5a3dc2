"""Tokenizers: semantic (features + k-means + dedup), hybrid, and the embedded baselines.

Importing this package imports nothing heavy; each tokenizer module is loaded when its name is used
(see ``slmtok.registry.TOKENIZERS``).
"""
