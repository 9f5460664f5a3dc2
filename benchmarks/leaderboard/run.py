"""The default leaderboard suite: build the corpus, run ``slmtok bench`` and ``slmtok leaderboard``.

    python benchmarks/leaderboard/run.py [--per-talker 4] [--corpus ~/.cache/slmtok/bench-corpus]

Corpus (recipe of ../shared/DATA.md), reported as two subsets:

- ``real``: Asterisk prompts of three talkers the embedded codebooks never heard (fr June, it Carlo,
  ru IvrvoiceRU; 16 kHz G.722), the first ``--per-talker`` prompts of at least 2 s each (shorter ones
  are single words, beeps and tones); no transcripts, so no WER;
- ``synthetic``: espeak-ng, ten English voices, each reading one everyday sentence at 150 words/min and
  22.05 kHz, with its transcript (so WER is measured, next to the WER of the unprocessed audio).
  Synthetic speech flatters every codec: read it apart.

Needs ``apt-get install asterisk-core-sounds-{fr,it,ru}-g722 espeak-ng`` and ``pip install -e '.[eval]'``.
Tokenizers: every registered one (``*``) plus the variants below; those whose weights cannot be had here
are listed as unavailable (``HF_HUB_OFFLINE=1`` is set unless the caller sets it, so that a missing
download fails at once instead of waiting on the network). Audio is not committed: the corpus is
rebuilt from the installed packages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TALKERS = ("fr", "it", "ru")
MIN_SECONDS = 2.0
VARIANTS = (
    "mel-rvq:n_codebooks=4",
    "mel-rvq:decoder=griffin-lim",
    "mel-rvq:n_codebooks=4,decoder=griffin-lim",
    "mfcc-km:dedup=true",
    "mfcc-km:decoder=griffin-lim",
)
#: (espeak-ng voice, sentence): everyday sentences that Whisper tiny.en transcribes well from espeak-ng
#: (about 10 % WER; the Harvard sentences gave 40-60 %, too noisy a baseline to measure a codec by)
SYNTHETIC = (
    ("en-us+klatt", "Please enter your account number followed by the pound key."),
    ("en-us+f3", "The weather will be sunny and warm for the rest of the week."),
    ("en-gb-x-rp", "Thank you for calling, all of our agents are busy right now."),
    ("en-us", "She opened the window and looked out at the quiet street."),
    ("en-us+m3", "We should leave early tomorrow morning to avoid the traffic."),
    ("en-gb+f2", "My brother works at a small bakery near the train station."),
    ("en-029", "Could you please send me the report before the meeting?"),
    ("en-gb", "The children were playing in the garden after school."),
    ("en-us+klatt3", "I would like to book a table for two people tonight."),
    ("en-gb-x-rp+f4", "Remember to turn off the lights when you leave the office."),
)
SPEED = 150  # words per minute (espeak-ng's default is 175)


def build_real(folder: Path, per_talker: int) -> int:
    import slmtok
    from slmtok.corpora import asterisk_prompts

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for language in TALKERS:
        kept = 0
        for path in asterisk_prompts(language):
            if kept == per_talker:
                break
            try:
                wav, rate = slmtok.read_audio(path)
            except slmtok.AudioError:  # the ru package has a few empty files
                continue
            if wav.shape[-1] < MIN_SECONDS * rate:
                continue
            target = folder / f"{language}-{path.stem}.g722"
            if not target.exists():
                shutil.copyfile(path, target)
            kept += 1
            count += 1
    return count


def build_synthetic(folder: Path) -> int:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install espeak-ng")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for number, (voice, text) in enumerate(SYNTHETIC):
        name = f"{number:02d}-{voice.replace('+', '_')}.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(SPEED), "-w", str(folder / name), text]
        subprocess.run(command, check=True)
        manifest.append({"path": name, "text": text, "voice": voice})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return len(manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path.home() / ".cache/slmtok/bench-corpus")
    parser.add_argument("--per-talker", type=int, default=4, help="real prompts per talker (default 4)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--site", type=Path, default=HERE / "site")
    parser.add_argument("--tokenizers", nargs="+", default=["*", *VARIANTS])
    parser.add_argument("--metrics", default="pesq,stoi,si_sdr,mel,f0,wer,speaker,dnsmos")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    real = build_real(args.corpus / "real", args.per_talker)
    synthetic = build_synthetic(args.corpus / "synthetic")
    print(f"corpus: {real} real prompts, {synthetic} synthetic utterances under {args.corpus}", flush=True)

    from slmtok.cli.main import main as slmtok_main

    code = slmtok_main(
        [
            "bench",
            "--tokenizers", *args.tokenizers,
            "--data", f"real={args.corpus / 'real'}", f"synthetic={args.corpus / 'synthetic' / 'manifest.jsonl'}",
            "--output", str(args.results),
            "--metrics", args.metrics,
            "--examples", "1",
            "--device", args.device,
        ]
    )  # fmt: skip
    if code:
        return code
    return slmtok_main(["leaderboard", str(args.results), "--output", str(args.site)])


if __name__ == "__main__":
    sys.exit(main())
