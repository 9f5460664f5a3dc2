"""Tokenizers: semantic (features + k-means + dedup), hybrid, and the embedded baselines.

Importing this package imports nothing heavy; each tokenizer module is loaded when its name is used
(see ``slmtok.registry.TOKENIZERS``).
"""

if __name__ == "tokenizers":  # pragma: no cover - only when a checkout's root is on sys.path
    # ``python -m ...`` from the repository root puts this folder on the path as a top-level package
    # named ``tokenizers``, shadowing Hugging Face's (used by faster-whisper, transformers). Step aside:
    # import the real one with the root off the path, and stand it in for this module.
    import importlib as _importlib
    import os as _os
    import sys as _sys

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _saved = list(_sys.path)
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _root]
    _self = _sys.modules.pop(__name__)
    try:
        _sys.modules[__name__] = _importlib.import_module(__name__)
    except ImportError:  # Hugging Face tokenizers is not installed: nothing to shadow
        _sys.modules[__name__] = _self
    finally:
        _sys.path[:] = _saved
