"""Long fuzz run of ``load_tokens`` and ``slmtok decode`` over mutated real token files.

    python benchmarks/tokenfile_fuzz.py --cases 2000 [--seed 0] [--max-seconds 30]

The mutations and the per-case check are those of the CI test (``tests/tokenfile_mutations.py``), drawn
here from a seeded ``random.Random`` instead of hypothesis. Each case: the mutated file alone in a fresh
folder, ``load_tokens`` (must return tokens or raise ``TokenFileError``), then ``slmtok decode FILE -o
out/case.wav`` in-process, with an earlier output already in place in half the cases. Counted: one-line
``slmtok: error:`` exits (code 1, no output file), decodes, and everything else: tracebacks, other exits,
files written besides the output, outputs written on error, earlier outputs changed by a refused decode,
changed inputs, cases over the memory bound (peak RSS added, the kernel's high-water mark reset per case)
or the time bound. Earlier outputs replaced by a successful decode are counted apart (the CLI's policy). Writes ``benchmarks/results/tokenfile_fuzz.json``.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _mutations_module():
    spec = importlib.util.spec_from_file_location(
        "tokenfile_mutations", ROOT / "tests" / "tokenfile_mutations.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class RandomDraw:
    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def integers(self, low: int, high: int) -> int:
        return self.rnd.randint(low, high)

    def choice(self, options):
        return self.rnd.choice(list(options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="decode --max-seconds per case")
    parser.add_argument("--max-mib", type=float, default=1024.0, help="peak RSS a case may add (MiB)")
    parser.add_argument("--max-wall", type=float, default=30.0, help="seconds a case may take")
    parser.add_argument("--out", type=Path, default=RESULTS / "tokenfile_fuzz.json")
    args = parser.parse_args(argv)

    m = _mutations_module()
    draw = RandomDraw(random.Random(args.seed))
    kinds: collections.Counter = collections.Counter()
    by_mutation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    load_outcomes: collections.Counter = collections.Counter()
    examples: dict[str, dict] = {}
    errors: collections.Counter = collections.Counter()
    peak_max = wall_max = 0.0
    with_existing: collections.Counter = collections.Counter()
    replaced = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmtok-fuzz-") as tmp:
        root = Path(tmp)
        bases = m.base_files(root)
        for i in range(args.cases):
            label, name, blob = m.mutate(bases, draw)
            folder = root / f"case{i}"
            folder.mkdir()
            existing = draw.integers(0, 1) == 1  # an earlier output in place: a refusal must leave it
            outcome = m.run_case(
                blob,
                folder,
                max_seconds=args.max_seconds,
                max_bytes=int(args.max_mib * 2**20),
                max_wall=args.max_wall,
                existing_output=existing,
            )
            with_existing[outcome.kind] += existing
            replaced += outcome.extra["replaced_existing_output"]
            kinds[outcome.kind] += 1
            by_mutation[name][outcome.kind] += 1
            load_outcomes[outcome.load_tokens] += 1
            peak_max = max(peak_max, outcome.peak_bytes / 2**20)
            wall_max = max(wall_max, outcome.seconds)
            if outcome.kind == "error":  # which refusal, without the case's path
                text = outcome.stderr.removeprefix("slmtok: error: ").replace(
                    str(folder / "case.slmtok"), "FILE"
                )
                errors[text[:70]] += 1
            if outcome.kind not in ("error", "decoded") and outcome.kind not in examples:
                examples[outcome.kind] = {"base": label, "mutation": name, "stderr": outcome.stderr}
            for p in sorted(folder.rglob("*"), reverse=True):  # keep the disk small
                p.unlink() if p.is_file() else p.rmdir()
            folder.rmdir()
            if (i + 1) % 200 == 0:
                print(
                    f"{i + 1}/{args.cases} cases, {time.perf_counter() - start:.0f} s: {dict(kinds)}",
                    flush=True,
                )
    elapsed = time.perf_counter() - start
    other = {k: v for k, v in kinds.items() if k not in ("error", "decoded")}
    result = {
        "command": "python benchmarks/tokenfile_fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cases": args.cases,
        "one_line_errors": kinds.get("error", 0),
        "decoded": kinds.get("decoded", 0),
        "anything_else": sum(other.values()),
        "tracebacks": sum(v for k, v in other.items() if k.startswith(("traceback", "load_tokens raised"))),
        "over_memory": kinds.get("over memory", 0),
        "over_time": kinds.get("over time", 0),
        "outputs_written_on_error": kinds.get("output written on error", 0),
        "files_written_outside_output": sum(v for k, v in other.items() if k.startswith("files written")),
        "inputs_changed": kinds.get("input changed", 0),
        "existing_outputs_changed_on_error": kinds.get("existing output changed on error", 0),
        "cases_with_an_existing_output": dict(with_existing),
        "existing_outputs_replaced_by_a_successful_decode": replaced,
        "other_outcomes": other,
        "examples_of_other_outcomes": examples,
        "load_tokens": dict(load_outcomes),
        "by_mutation": {k: dict(v) for k, v in sorted(by_mutation.items())},
        "top_refusals": dict(errors.most_common(25)),
        "bounds": {"max_seconds": args.max_seconds, "max_mib": args.max_mib, "max_wall_s": args.max_wall},
        "worst_case": {"peak_mib_added": round(peak_max, 1), "wall_s": round(wall_max, 2)},
        "seconds": round(elapsed, 1),
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "2-core CPU, shared",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in list(result)[:14]}, indent=2))
    return 0 if not other else 1


if __name__ == "__main__":
    sys.exit(main())
