"""The ``slmtok`` command line. Heavy modules (torch, the tokenizers) are imported inside commands."""
