"""The default SLM suite: build the default probe set, run ``slmtok probes run`` on the embedded
tokenizers (and any you trained), write the results and the Markdown table the README shows.

    python benchmarks/slm_suite.py [-t semantic-bundle:bundle=MY_KMEANS_FOLDER ...] [--probes ~/.cache/slmtok/probes]

Tokenizers: ``mel-rvq``, ``mfcc-km``, ``mulaw-8bit`` and ``random-codes`` (the chance row), plus the
text ceiling the suite adds (the phone alignment itself), plus every ``-t``; a BPE over mfcc-km's
deduplicated units of the probe train set gives its tokens/s after BPE. The probe set is rebuilt
from espeak-ng with the seed (audio is never committed); the results go to
``benchmarks/results/slm_suite/`` (``results.json``, ``rows.jsonl``, ``benchmark.json`` with the command,
wall time and machine, ``slm_suite.md``, and ``site/``: the leaderboard page merging these results with
the committed resynthesis bench). A rerun starts afresh unless ``--resume``. Needs
``apt-get install espeak-ng``. Every figure is "synthetic": these are not ZeroSpeech scores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "slm_suite"
TOKENIZERS = ("mel-rvq", "mfcc-km", "mulaw-8bit", "random-codes")
BPE_TOKENIZER = "mfcc-km"  # the single-codebook semantic tokenizer a BPE is fitted on
REPORT = "slm_suite.md"
RUN = "benchmark.json"


def machine() -> str:
    """The CPU and its cores, and how loaded the machine was (1-minute load average at the end)."""
    from slmtok.metrics.cost import cpu_name

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_name()}, {os.cpu_count()} cores, load {load:.1f}"


def fit_bpe(probes: Path, vocab: int, slmtok_main) -> tuple[Path, str, float]:
    """``slmtok bpe fit`` of ``BPE_TOKENIZER``'s deduplicated units on the probe ``train`` audio (reused
    when already fitted): returns the BPE folder, the command as shown and the seconds it took."""
    items = [json.loads(line) for line in (probes / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [str(probes / it["audio"]) for it in items if it["set"] == "train"]
    folder = probes.parent / f"{probes.name}-bpe-{BPE_TOKENIZER}-{vocab}"
    args = ["-t", BPE_TOKENIZER, "--vocab", str(vocab), "--dedup", "-o", str(folder), "--force"]
    shown = f"slmtok bpe fit <the {len(train)} train files of {probes}> " + shlex.join(args)
    if (folder / "bpe_card.json").is_file():
        return folder, shown, 0.0
    began = time.perf_counter()
    if slmtok_main(["bpe", "fit", *train, *args]):
        raise SystemExit(f"bpe fit failed for {BPE_TOKENIZER}")
    return folder, shown, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=Path, default=Path.home() / ".cache/slmtok/probes")
    parser.add_argument("--seed", type=int, default=0, help="probe set seed (default 0)")
    parser.add_argument("-t", "--tokenizers", nargs="+", action="extend", default=[], help="added tokenizers")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="LM trainings at once (default 2: the cores)")
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument("--resume", action="store_true", help="keep finished stages of an earlier run")
    parser.add_argument(
        "--bpe-vocab",
        type=int,
        default=512,
        help="fit a BPE of this vocabulary on mfcc-km's deduplicated units of the probe train set for the "
        "BPE tokens/s column (0: none; default 512: the train set is 25 min)",
    )
    parser.add_argument(
        "--resynthesis",
        type=Path,
        default=HERE / "leaderboard" / "results",
        help="resynthesis results to merge into RESULTS/site (the committed leaderboard's by default)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from slmtok.atomic import atomic_path
    from slmtok.cli.main import main as slmtok_main
    from slmtok.leaderboard.markdown import suite_report
    from slmtok.leaderboard.results import read_results

    build_seconds = 0.0
    if not (args.probes / "probes.json").is_file():
        began = time.perf_counter()
        code = slmtok_main(["probes", "build", "-o", str(args.probes), "--seed", str(args.seed)])
        if code:
            return code
        build_seconds = time.perf_counter() - began
    if args.results.exists() and not args.resume:
        shutil.rmtree(args.results)
    bpe_command, bpe_seconds, extra = "", 0.0, []
    if args.bpe_vocab:
        bpe, bpe_command, bpe_seconds = fit_bpe(args.probes, args.bpe_vocab, slmtok_main)
        extra = ["--bpe", str(bpe)]
    tokenizers = [*TOKENIZERS, *args.tokenizers]
    command = ["probes", "run", str(args.probes), "-t", *tokenizers, "-o", str(args.results), *extra]
    command += ["--threads", str(args.threads), "--jobs", str(args.jobs)]
    command += ["--skip-lm"] if args.skip_lm else []
    began = time.perf_counter()
    code = slmtok_main(command)
    wall = time.perf_counter() - began
    if code:
        return code
    home = str(Path.home())
    shown = shlex.join(["slmtok", *command]).replace(str(HERE.parent) + "/", "").replace(home, "~")
    run = {
        "command": shown,
        "build_command": f"slmtok probes build -o {str(args.probes).replace(home, '~')} --seed {args.seed}",
        "build_seconds": build_seconds,
        "bpe_command": bpe_command.replace(home, "~"),
        "bpe_seconds": bpe_seconds,
        "wall_seconds": wall,
        "machine": machine(),
    }
    with atomic_path(args.results / RUN) as tmp:
        tmp.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    summary, rows, _ = read_results(args.results)
    with atomic_path(args.results / REPORT) as tmp:
        tmp.write_text(suite_report(summary, rows, run), encoding="utf-8")
    print(f"{wall / 60:.1f} min; report: {args.results / REPORT}")
    if args.resynthesis and (args.resynthesis / "results.json").is_file():  # the merged page
        site = ["leaderboard", str(args.resynthesis), str(args.results), "-o", str(args.results / "site")]
        return slmtok_main(
            [*site, "--no-audio", "--title", "slmtok: resynthesis and SLM fitness (synthetic)"]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
