"""SIGKILL proof: kill ``slmtok encode``, ``encode-corpus``, ``lm train`` and ``bench`` at random moments,
rerun each to completion, and count what was lost, duplicated, changed or left behind.

    python benchmarks/kill_resume.py [--kills 8] [--kills-per-trial 2] [--files 12] [--seed 0]
                                     [--commands encode encode-corpus lm-train bench]

For each command an uninterrupted run into a fresh folder is the reference. Then, per trial, the same
command is started in a fresh folder as a subprocess (its own session) and SIGKILL-ed (the whole process
group) after a random delay, drawn uniformly between the moment its output folder appears and the
reference's duration; that is repeated ``--kills-per-trial`` times on the same folder, and a final rerun
(the CLI's ``main`` in this process) finishes the job. Counted after the final rerun:

- ``lost``: outputs of the reference that are missing (token files, corpus index rows, LM metric rows of
  a step, bench rows); ``duplicated``: outputs present twice or not in the reference;
- ``mismatched``: outputs whose content differs from the reference (codes, bench scores, the final LM
  weights and losses, bit for bit);
- ``orphaned_temps``: temporary files anywhere under the output folder (``temps_seen_after_kills``
  counts those the kills left, which the reruns had to remove);
- ``model_ne_checkpoint``: LM runs whose ``model.safetensors`` is not the checkpoint's weights;
- ``failed_reruns``: final reruns that did not exit 0.

Writes ``benchmarks/results/kill_resume.json``. Inputs: the first ``--files`` Asterisk prompts (16 kHz
G.722), cut to 1.5 s, written as WAV. Tokenizers: the embedded ``mel-rvq`` and ``mulaw-8bit``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
import torch
from safetensors import safe_open

TMP_SUFFIX = ".slmtok-tmp"
LOCK = ".slmtok.lock"
COMMANDS = ("encode", "encode-corpus", "lm-train", "bench")
MEL_RVQ = "mel-rvq:n_codebooks=2,griffin_lim_iters=4"


@dataclass
class Counts:
    command: str
    trials: int = 0
    kills: int = 0
    finished_before_kill: int = 0
    reruns: int = 0
    failed_reruns: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    orphaned_temps: int = 0
    temps_seen_after_kills: int = 0
    model_ne_checkpoint: int = 0
    reference_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        bad = (self.failed_reruns, self.lost, self.duplicated, self.mismatched, self.orphaned_temps)
        return not any(bad) and not self.model_ne_checkpoint


# ------------------------------------------------------------------------------------------ readers
def tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file read with the safetensors package itself (not slmtok's readers)."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})  # noqa: SIM118


def jsonl(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def temps(folder: Path) -> list[Path]:
    """Leftovers of interrupted writes: slmtok temporary files and any other hidden file but the lock."""
    if not folder.exists():
        return []
    return [
        p for p in folder.rglob("*")
        if p.is_file() and (p.name.endswith(TMP_SUFFIX) or (p.name.startswith(".") and p.name != LOCK))
    ]  # fmt: skip


def compare_sets(counts: Counts, reference: list, got: list) -> None:
    counts.lost += len(set(reference) - set(got))
    counts.duplicated += len(got) - len(set(got)) + len(set(got) - set(reference))


# ---------------------------------------------------------------------------------------- commands
@dataclass
class Scenario:
    """One command: its arguments for an output folder, and how to compare an output with the reference."""

    name: str
    argv: Callable[[Path], list[str]]
    compare: Callable[[Counts, Path, Path], None]


def encode_compare(counts: Counts, ref: Path, out: Path) -> None:
    names = {p.relative_to(ref).as_posix() for p in ref.rglob("*.slmtok")}
    got = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name not in (LOCK,)]
    got = [g for g in got if not Path(g).name.startswith(".")]
    compare_sets(counts, sorted(names), got)
    for name in names & set(got):
        a, b = tensors(ref / name)[0], tensors(out / name)[0]
        counts.mismatched += not (
            torch.equal(a["codes"], b["codes"]) and torch.equal(a["lengths"], b["lengths"])
        )


def corpus_items(out: Path) -> dict[str, torch.Tensor]:
    items = {}
    for row in jsonl(out / "index.jsonl"):
        data, _ = tensors(out / row["shard"])
        offsets = data["offsets"]
        items[row["id"]] = data["codes"][:, int(offsets[row["row"]]) : int(offsets[row["row"] + 1])]
    return items


def corpus_compare(counts: Counts, ref: Path, out: Path) -> None:
    ids = [r["id"] for r in jsonl(out / "index.jsonl")]
    expected = [r["id"] for r in jsonl(ref / "index.jsonl")]
    compare_sets(counts, expected, ids)
    a, b = corpus_items(ref), corpus_items(out)
    counts.mismatched += sum(not torch.equal(a[k], b[k]) for k in a.keys() & b.keys())


def lm_compare(counts: Counts, ref: Path, out: Path) -> None:
    def losses(run: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in jsonl(run / "metrics.jsonl") if "loss" in r]

    mine, theirs = losses(out), losses(ref)
    compare_sets(counts, [s for s, _ in theirs], [s for s, _ in mine])
    counts.mismatched += sum(a != b for a, b in zip(sorted(set(mine)), sorted(set(theirs)), strict=False))
    model, meta = tensors(out / "model.safetensors")
    checkpoint, cmeta = tensors(out / "checkpoint.safetensors")
    same = meta.get("step") == cmeta.get("step") and all(
        torch.equal(v, checkpoint.get(f"model.{k}", torch.empty(0))) for k, v in model.items()
    )
    counts.model_ne_checkpoint += not same
    reference = tensors(ref / "model.safetensors")[0]
    counts.mismatched += any(not torch.equal(v, reference[k]) for k, v in model.items())


STABLE = ("si_sdr", "log_mel_distance", "frames", "tokens", "bits", "status", "seconds")


def bench_compare(counts: Counts, ref: Path, out: Path) -> None:
    mine, theirs = jsonl(out / "rows.jsonl"), jsonl(ref / "rows.jsonl")
    compare_sets(counts, [r["key"] for r in theirs], [r["key"] for r in mine])
    by_key = {r["key"]: r for r in theirs}
    for row in mine:
        if row["key"] in by_key:
            counts.mismatched += any(row.get(k) != by_key[row["key"]].get(k) for k in STABLE)


def scenarios(audio: Path, lm_data: Path) -> dict[str, Scenario]:
    return {
        "encode": Scenario(
            "encode",
            lambda out: ["encode", str(audio), "-o", str(out), "-t", "mel-rvq", "-b", "2"],
            encode_compare,
        ),
        "encode-corpus": Scenario(
            "encode-corpus",
            lambda out: ["encode-corpus", str(audio), "-o", str(out), "-t", "mel-rvq", "--shard-size", "2"],
            corpus_compare,
        ),
        "lm-train": Scenario(
            "lm-train",
            lambda out: [
                "lm",
                "train",
                str(lm_data),
                "-o",
                str(out),
                "--steps",
                "20",
                "--batch-size",
                "2",
                "--block-size",
                "32",
                "--save-every",
                "6",
                "--log-every",
                "1",
                "--eval-every",
                "10",
                "--eval-steps",
                "64",
                "--warmup",
                "5",
                "--device",
                "cpu",
                "-C",
                "dropout=0.1",
            ],  # fmt: skip
            lm_compare,
        ),
        "bench": Scenario(
            "bench",
            lambda out: [
                "bench",
                "-t",
                "mulaw-8bit",
                MEL_RVQ,
                "-d",
                str(audio),
                "-o",
                str(out),
                "--metrics",
                "si_sdr,mel",
                "--examples",
                "1",
            ],  # fmt: skip
            bench_compare,
        ),
    }


# --------------------------------------------------------------------------------------------- runs
def run_in_process(argv: list[str]) -> int:
    """The CLI's ``main`` here (no interpreter start-up), its output swallowed."""
    from slmtok.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def start_and_kill(argv: list[str], out: Path, window: float, rng: random.Random) -> bool:
    """Start ``slmtok ARGV`` in its own session and SIGKILL its process group at a random moment after its
    output folder appears; returns whether it was killed (``False``: it finished first)."""
    command = [sys.executable, "-m", "slmtok.cli.main", *argv]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while not out.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, window))
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return True


def run_command(scenario: Scenario, work: Path, kills: int, per_trial: int, rng: random.Random) -> Counts:
    counts = Counts(scenario.name)
    ref = work / f"{scenario.name}-reference"
    began = time.perf_counter()
    code = run_in_process(scenario.argv(ref))
    counts.reference_seconds = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"the reference run of {scenario.name} failed (exit {code})")
    trial = 0
    while counts.kills < kills:
        trial += 1
        out = work / f"{scenario.name}-{trial}"
        window = counts.reference_seconds * 1.2
        done_in_trial, attempts, target = 0, 0, min(per_trial, kills - counts.kills)
        while done_in_trial < target and attempts < 4 * per_trial:
            attempts += 1
            if start_and_kill(scenario.argv(out), out, window, rng):
                done_in_trial += 1
                counts.kills += 1
                counts.temps_seen_after_kills += len(temps(out))
            else:
                counts.finished_before_kill += 1
                window *= 0.5  # it finished first: kill sooner next time
        counts.reruns += 1
        code = run_in_process(scenario.argv(out))
        if code != 0:
            counts.failed_reruns += 1
            counts.notes.append(f"trial {trial}: rerun exit {code}")
            continue
        counts.orphaned_temps += len(temps(out))
        scenario.compare(counts, ref, out)
        counts.trials += 1
    return counts


def make_inputs(work: Path, files: int) -> tuple[Path, Path]:
    """``files`` WAV inputs (1.5 s each) and an LM data folder prepared from them (mulaw-8bit tokens)."""
    import slmtok
    from slmtok.corpora import asterisk_prompts

    audio = work / "audio"
    audio.mkdir()
    for path in asterisk_prompts("en")[: files * 2]:
        wav, rate = slmtok.read_audio(path)
        if wav.shape[-1] >= int(1.5 * rate) and len(list(audio.iterdir())) < files:
            sf.write(audio / f"{path.stem}.wav", wav[0, : int(1.5 * rate)].numpy(), rate, subtype="PCM_16")
    data = work / "lm-data"
    code = run_in_process(
        ["lm", "prepare", str(audio), "-o", str(data), "-t", "mulaw-8bit", "--valid-fraction", "0.2"]
    )
    if code != 0:
        raise SystemExit("lm prepare failed")
    return audio, data


def run_all(
    work: Path, kills: int, per_trial: int = 2, files: int = 12, seed: int = 0, commands=COMMANDS
) -> list[Counts]:
    """Run the proof for ``commands`` in ``work`` (an empty folder); returns the counts per command."""
    rng = random.Random(seed)
    audio, data = make_inputs(work, files)
    table = scenarios(audio, data)
    return [run_command(table[name], work, kills, per_trial, rng) for name in commands]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs per command (default 8)")
    parser.add_argument("--kills-per-trial", type=int, default=2, help="kills before each final rerun")
    parser.add_argument("--files", type=int, default=12, help="audio inputs (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "kill_resume.json"))
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmtok-kill-") as work:
        results = run_all(Path(work), args.kills, args.kills_per_trial, args.files, args.seed, args.commands)
    total = time.perf_counter() - began
    header = f"{'command':<14}{'kills':>6}{'reruns':>7}{'lost':>6}{'dup':>5}{'diff':>6}{'orphans':>8}"
    print(header + f"{'temps seen':>11}{'model!=ckpt':>12}")
    for c in results:
        print(
            f"{c.command:<14}{c.kills:>6}{c.reruns:>7}{c.lost:>6}{c.duplicated:>5}{c.mismatched:>6}"
            f"{c.orphaned_temps:>8}{c.temps_seen_after_kills:>11}{c.model_ne_checkpoint:>12}"
        )
    report = {
        "benchmark": "kill_resume",
        "command": " ".join(sys.argv),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "wall_seconds": total,
        "all_clean": all(c.clean for c in results),
        "results": [asdict(c) for c in results],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'all clean' if report['all_clean'] else 'NOT CLEAN'} in {total:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
