"""Semantic tokenizers as bundles: features + layer + k-means + dedup policy + a compatible unit vocoder."""
