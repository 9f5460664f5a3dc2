"""Speech language models on the tokens of any tokenizer: prepare data, train, generate.

>>> import slmtok.lm
>>> slmtok.lm.prepare(["corpus/"], "data", tokenizer="mel-rvq", pattern="delay")
>>> slmtok.lm.train("data", "run", model="small", max_steps=2000)
>>> result = slmtok.lm.generate("run", "prompt.wav", seconds=5)   # result.audio, result.tokens

Modules: ``patterns`` (codes <-> LM steps), ``data`` and ``sources`` (token shards + manifest),
``model`` (the transformer), ``checkpoint`` (run folders), ``training`` (the loop), ``generation``
(continuation). The modules are not named ``train``/``generate``: importing a submodule sets the
package attribute of its name, which would hide the functions. Attributes are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "prepare": "slmtok.lm.data",
    "write_dataset": "slmtok.lm.data",
    "TokenData": "slmtok.lm.data",
    "make_pattern": "slmtok.lm.patterns",
    "PATTERNS": "slmtok.lm.patterns",
    "ModelConfig": "slmtok.lm.model",
    "SpeechLM": "slmtok.lm.model",
    "train": "slmtok.lm.training",
    "TrainConfig": "slmtok.lm.training",
    "Generation": "slmtok.lm.generation",
    "generate": "slmtok.lm.generation",
    "load_run": "slmtok.lm.generation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmtok.lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
