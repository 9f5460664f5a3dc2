"""BPE over discrete speech units (issue #11, factor B): ``slmtok bpe fit`` and ``slmtok.load(NAME,
bpe=FOLDER)``. See ``slmtok.bpe.model`` (fit / save / load / ``bpe_encode_units``) and
``slmtok.bpe.tokenizer`` (the wrapping tokenizer)."""

from slmtok.bpe.model import BpeError, BpeModel, bpe_encode_units, load_bpe

__all__ = ["BpeError", "BpeModel", "bpe_encode_units", "load_bpe"]
