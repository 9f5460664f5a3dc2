"""Refresh the generated parts of README.md: ``python -m slmtok.cli.readme [README.md]``.

Replaces the text between ``<!-- tokenizers:start -->``/``<!-- tokenizers:end -->`` with the registry's
tokenizer table and between ``<!-- benchmark:NAME:start -->``/``end`` with ``benchmarks/results/NAME.md`` (or ``NAME/NAME.md``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from slmtok.cli.table import markdown_table, tokenizer_rows


def refresh(readme: Path) -> str:
    text = readme.read_text()
    text = _fill(text, "tokenizers", markdown_table(tokenizer_rows()))
    results = readme.parent / "benchmarks" / "results"
    for name in re.findall(r"<!-- benchmark:(\w+):start -->", text):
        flat, nested = results / f"{name}.md", results / name / f"{name}.md"
        text = _fill(text, f"benchmark:{name}", (flat if flat.is_file() else nested).read_text())
    return text


def _fill(text: str, tag: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {re.escape(tag)}:start -->\n).*?(<!-- {re.escape(tag)}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(refresh(path))
