"""Corpus-scale encoding: sharded, resumable, loss-free, on one machine or a Ray cluster.

>>> from slmtok.corpus import encode_corpus, load_item
>>> summary = encode_corpus(["corpus/"], "tokens/", tokenizer="mel-rvq", engine="local")
>>> tokens = load_item("tokens/", "speaker1/utt001")    # == slmtok.load("mel-rvq").encode(that file)

An output folder holds ``plan.json`` (the tokenizer, its card hash and the fixed assignment of inputs to
shards), ``shards/shard-NNNNN.safetensors`` (written atomically, one per shard, with the codes of its
items and the failures among them), and, once every shard is done, ``index.jsonl`` (every input: shard,
row, frames, duration), ``failures.jsonl`` and ``summary.json``. Restarting the same command skips the
shards that are complete (a truncated or damaged shard is encoded again, with a warning), so a killed run
finishes with every input encoded exactly once; a restart that asks for something else (tokenizer,
options, weights, K, shard size, inputs) is refused naming what changed. One run at a time per folder
(an advisory lock, ``.slmtok.lock``); temporary files a killed run left are removed by the next.

Paths in ``plan.json`` are absolute, so a run resumes from any working directory (a plan of slmtok 0.x,
with relative paths, resumes from the folder it was started in and is stored absolute from then on).
Local weights (``checkpoint=``) are compared by sha256, not by path. Inputs that failed are retried on a
restart: those that failed to read when they read now (a broken file replaced: its new size is not a
change of inputs), and every failed one with ``retry_failed=True`` (``--retry-failed``).
"""

from __future__ import annotations

from slmtok.corpus.index import iter_items, load_item, read_index
from slmtok.corpus.run import encode_corpus

__all__ = ["encode_corpus", "iter_items", "load_item", "read_index"]
