"""Batched slmtok encode vs the upstream package called once per file; peak memory of long encodes.

    python benchmarks/codecs_speed.py speed [--codecs encodec-24khz dac-16khz speechtokenizer] [--items 64]
    python benchmarks/codecs_speed.py memory [--codec encodec-24khz] [--minutes 10 30 60] [--tiny]

**speed**: the same weights (a random-weight stand-in at the published architecture's size, written in
the upstream's own format by ``slmtok.codecs.standins``; speed does not depend on the weights' values)
and the same audio: ``--items`` real utterances of mixed length (Asterisk prompts of four talkers, 16 kHz,
0.5-8 s), converted once to the model's rate. Upstream: the package's own API on one file at a time
(EnCodec ``set_target_bandwidth`` + ``encode``; DAC ``preprocess`` + ``encode``; SpeechTokenizer
``encode``). slmtok: one ``tok.encode`` call on the padded batch with ``lengths``. Both after one
warm-up call on an utterance outside the set, on the same torch threads. Reported: wall and CPU
seconds, the ratio upstream / slmtok, and the codes of every item compared with upstream's. slmtok runs
each item on one intra-op thread (see ``slmtok.codecs.base``); ``--thread-control`` also runs upstream
on one thread, to show how many codes the thread count alone changes in upstream's own kernels.

**memory**: each duration runs in a fresh process that encodes that many minutes of speech (prompts
repeated) in one ``tok.encode`` call; peak RSS (``ru_maxrss``) is reported with the RSS before encoding
(model and input loaded) so the growth is visible. Chunked encoding keeps the working set bounded, so
the growth should not depend on the duration (beyond the codes themselves).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import slmtok
from slmtok.atomic import atomic_path
from slmtok.audio import prepare
from slmtok.batching import pad_stack
from slmtok.codecs import standins
from slmtok.corpora import asterisk_prompts

RESULTS = Path(__file__).resolve().parent / "results"
CODEC_KBPS = {"encodec-24khz": 6.0, "encodec-48khz": 12.0}


def utterances(count: int, seed_skip: int = 0) -> list[torch.Tensor]:
    """``count`` real utterances at 16 kHz ``[T]``, 0.5-8 s, taken in turn from four talkers."""
    pools = {lang: iter(asterisk_prompts(lang)[seed_skip:]) for lang in ("en", "fr", "it", "ru")}
    out: list[torch.Tensor] = []
    while len(out) < count:
        for _lang, files in pools.items():
            for path in files:
                wav, rate = slmtok.read_audio(path)
                if rate == 16000 and 0.5 * rate <= wav.shape[-1]:
                    out.append(wav[0, : 8 * rate])
                    break
            if len(out) == count:
                break
    return out


def write_standin(name: str, folder: Path, tiny: bool):
    """Checkpoint path (or (config, weights)) of a random-weight stand-in for ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    if name.startswith("encodec-"):
        return str(standins.write_encodec(folder / f"{name}.th", name.split("-")[1], tiny=tiny))
    if name.startswith("dac-"):
        return str(standins.write_dac(folder / f"{name}.pth", name.split("-")[1], tiny=tiny))
    return tuple(str(p) for p in standins.write_speechtokenizer(folder / name, tiny=tiny))


def upstream_encoder(name: str, checkpoint, k: int):
    """A function ``[1, C, T]`` model-rate audio -> codes ``[K, T']``, through the upstream API only."""
    if name.startswith("encodec-"):
        from slmtok.codecs.encodec import build_model, infer_architecture
        from slmtok.hub.safe_load import load_torch_checkpoint

        state = load_torch_checkpoint(checkpoint)
        model = build_model(name.split("-")[1], infer_architecture(state))  # EnCodec's own classes
        model.load_state_dict(state)
        model.set_target_bandwidth(CODEC_KBPS[name])
        return lambda x: torch.cat([codes for codes, _ in model.encode(x)], dim=-1)[0]
    if name.startswith("dac-"):
        import dac

        model = dac.DAC.load(checkpoint).eval()
        return lambda x: model.encode(model.preprocess(x, model.sample_rate), n_quantizers=k)[1][0]
    from speechtokenizer import SpeechTokenizer

    model = SpeechTokenizer.load_from_checkpoint(*checkpoint).eval()
    return lambda x: model.encode(x, n_q=k)[:, 0]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def speed(name: str, items: int, tiny: bool, work: Path, stack: bool, thread_control: bool = False) -> dict:
    checkpoint = write_standin(name, work, tiny)
    tok = slmtok.load(name, checkpoint=checkpoint)
    tok.stack_batches = stack
    k = tok.card.n_codebooks
    encode_upstream = upstream_encoder(name, checkpoint, k)
    speech = utterances(items + 1)
    warm, speech = speech[0], speech[1:]
    rate, channels = tok.card.sample_rate, tok.card.channels
    inputs = [prepare(x, 16000, target_rate=rate, target_channels=channels).wav for x in speech]
    seconds = sum(x.shape[-1] for x in inputs) / rate
    warm_input = prepare(warm, 16000, target_rate=rate, target_channels=channels).wav
    with torch.inference_mode():
        encode_upstream(warm_input)
        tok.encode(warm_input, rate)
        upstream, up_wall, up_cpu = timed(lambda: [encode_upstream(x) for x in inputs])
        batch = pad_stack([x[0] for x in inputs])
        tokens, wall, cpu = timed(lambda: tok.encode(batch, rate, lengths=[x.shape[-1] for x in inputs]))
    frames = mismatched_frames = 0
    for i, codes in enumerate(upstream):
        ours = tokens.item(i)
        assert ours.shape == codes.shape, (name, i, ours.shape, codes.shape)
        frames += codes.shape[-1]
        mismatched_frames += int((ours != codes).any(dim=0).sum())
    control = {}
    if thread_control:  # the same upstream calls on one thread: how much do thread counts alone change?
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        with torch.inference_mode():
            single = [encode_upstream(x) for x in inputs]
        torch.set_num_threads(threads)
        control = {
            "upstream_1_thread_vs_upstream_frames_with_different_codes": sum(
                int((a != b).any(dim=0).sum()) for a, b in zip(single, upstream, strict=True)
            ),
            "slmtok_vs_upstream_1_thread_frames_with_different_codes": sum(
                int((tokens.item(i) != a).any(dim=0).sum()) for i, a in enumerate(single)
            ),
        }
    return {
        "tokenizer": name,
        "weights": "random stand-in, " + ("narrow test size" if tiny else "published architecture size"),
        "parameters": sum(p.numel() for p in tok.model.parameters()),
        "n_codebooks": k,
        "slmtok_mode": "stacked batches (equal to single up to rounding)"
        if stack
        else "exact (one item per worker)",
        "items": len(inputs),
        "audio_seconds": round(seconds, 2),
        "upstream_per_file": {"wall_s": round(up_wall, 2), "cpu_s": round(up_cpu, 2)},
        "slmtok_batched": {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)},
        "speedup_wall": round(up_wall / wall, 2),
        "speedup_cpu": round(up_cpu / cpu, 2),
        "frames": frames,
        "frames_with_different_codes": mismatched_frames,
        **control,
    }


def memory_child(name: str, minutes: float, tiny: bool, work: Path) -> dict:
    """Runs in its own process: encode ``minutes`` of speech once, report RSS before and peak."""
    checkpoint = write_standin(name, work, tiny)
    tok = slmtok.load(name, checkpoint=checkpoint)
    speech = torch.cat(utterances(40))
    rate = tok.card.sample_rate
    speech = prepare(speech, 16000, target_rate=rate, target_channels=tok.card.channels).wav[0]
    n = int(minutes * 60 * rate)
    wav = speech.repeat(1, n // speech.shape[-1] + 1)[:, :n].contiguous()
    del speech
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens, wall, cpu = timed(lambda: tok.encode(wav, rate))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "tokenizer": name,
        "weights": "random stand-in, " + ("narrow test size" if tiny else "published architecture size"),
        "minutes": minutes,
        "input_mib": round(wav.numel() * 4 / 2**20, 1),
        "rss_before_encode_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "growth_mib": round(peak - before, 1),
        "frames": int(tokens.lengths[0]),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--codecs", nargs="+", default=["encodec-24khz", "dac-16khz", "speechtokenizer"])
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--stack", action="store_true", help="slmtok with stack_batches=True (see ChunkedCodec)")
    p.add_argument(
        "--thread-control", action="store_true", help="also run upstream on one thread and compare its codes"
    )
    p = sub.add_parser("memory")
    p.add_argument("--codec", default="encodec-24khz")
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for p in sub.choices.values():
        p.add_argument("--tiny", action="store_true", help="narrow test-size stand-ins (fast; not for speed)")
        p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
        p.add_argument("--work", default="/tmp/slmtok-codecs-bench", help="folder for stand-in checkpoints")
        p.add_argument("--out", default=str(RESULTS), help="folder for the JSON results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    machine = {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__}
    if args.mode == "memory" and args.child:
        print(json.dumps(memory_child(args.codec, args.minutes[0], args.tiny, work)))
        return 0
    if args.mode == "memory":
        rows = []
        for minutes in args.minutes:
            command = [
                sys.executable,
                __file__,
                "memory",
                "--child",
                "--codec",
                args.codec,
                "--minutes",
                str(minutes),
            ]
            command += ["--threads", str(args.threads), "--work", str(work)] + (
                ["--tiny"] if args.tiny else []
            )
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        result = {"machine": machine, "memory": rows}
        name = f"codecs_memory_{args.codec}{'_tiny' if args.tiny else ''}.json"
    else:
        rows = []
        for codec in args.codecs:
            rows.append(speed(codec, args.items, args.tiny, work, args.stack, args.thread_control))
            print(json.dumps(rows[-1]), flush=True)
        result = {"machine": machine, "speed": rows}
        name = f"codecs_speed{'_stacked' if args.stack else ''}{'_tiny' if args.tiny else ''}.json"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / name) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
