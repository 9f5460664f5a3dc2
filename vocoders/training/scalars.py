"""Training scalars: one JSON object a line in ``metrics.jsonl``, and TensorBoard event files.

TensorBoard's own writer (``torch.utils.tensorboard.SummaryWriter``) writes the events under
``OUT/tensorboard``; ``tensorboard`` comes with slmtok's dependencies (descript-audio-codec needs it), and
where it is missing the scalars go to ``metrics.jsonl`` alone. A resumed run first drops the rows (and,
through ``purge_step``, the events) written after the checkpoint it continues from, so both logs read as
if the run had never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path, open_append
from slmtok.errors import SlmtokError

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def trim(path: Path, step: int) -> None:
    """Drop rows past ``step`` and a last line torn by a kill; any other damage is refused."""
    if path.is_symlink() or not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise SlmtokError(f"{path}:{number}: not a JSON line; move the file away to resume") from None
        if row.get("step", 0) <= step:
            kept.append(line)
    if kept != lines or (text and not text.endswith("\n")):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class ScalarLog:
    """Appends ``{"step": N, name: value, ...}`` rows to ``OUT/metrics.jsonl`` and the same scalars, as
    ``group/name`` tags, to TensorBoard (``tensorboard=False``, or no ``tensorboard`` package: JSON only)."""

    def __init__(self, out: Path, step: int, *, tensorboard: bool = True) -> None:
        out.mkdir(parents=True, exist_ok=True)
        trim(out / METRICS, step)
        self.file = open_append(out / METRICS)
        self.writer = None
        self.missing = False  # True when TensorBoard was asked for but is not installed
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.missing = True
            else:
                self.writer = SummaryWriter(str(out / TENSORBOARD), purge_step=step or None, flush_secs=30)

    def write(
        self, step: int, group: str, values: dict[str, float], *, wall_time: float | None = None
    ) -> None:
        """One row; ``group`` prefixes the TensorBoard tags (``train/mel``, ``validation/mel_l1``)."""
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{group}/{name}", value, step, walltime=wall_time)

    def flush(self) -> None:
        self.file.flush()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
