"""``slmtok kmeans``: fit k-means on a corpus's features (a new semantic tokenizer), import published
scikit-learn k-means files, show a k-means file.

Only the standard library is imported at module level; the work is done in ``slmtok.kmeans`` and
``slmtok.tokenizers.semantic`` once a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("kmeans", help="fit, import or inspect k-means (semantic units)")
    sub = p.add_subparsers(dest="kmeans_command", metavar="ACTION")
    sub.required = True

    f = sub.add_parser(
        "fit",
        help="corpus -> features -> k-means -> a new semantic tokenizer (bundle folder)",
        description="Extract features of every file of the corpus (resumable: per-block samples are cached "
        "in OUT/cache), sample up to --max-frames frames uniformly, fit k-means (several restarts), and "
        "write a semantic bundle folder loadable with slmtok.load('semantic-bundle', bundle=OUT) or by --name.",
    )
    f.add_argument(
        "inputs", nargs="+", metavar="CORPUS", help="audio files, folders (recursive) or manifests"
    )
    f.add_argument("-o", "--output", required=True, help="bundle folder to write")
    f.add_argument(
        "--features", default="hubert-base", help="feature extractor (default hubert-base; mfcc, log-mel...)"
    )
    f.add_argument(
        "--layer", type=int, help="transformer layer of HuBERT features (1-based; default the last)"
    )
    f.add_argument("--checkpoint", help="feature-extractor weights in the upstream format (fairseq .pt / HF)")
    f.add_argument(
        "--trust", action="store_true", help="read configuration objects of an unverified fairseq .pt"
    )
    f.add_argument("-k", "--clusters", type=int, default=100, help="number of units K (default 100)")
    f.add_argument(
        "--backend", default="faiss", help="k-means backend: faiss, torch, sklearn (default faiss)"
    )
    f.add_argument("--device", default=None, help="cpu or cuda (features and FAISS/torch k-means)")
    f.add_argument("--max-frames", type=int, default=1_000_000, help="frame budget sampled from the corpus")
    f.add_argument(
        "--restarts", type=int, default=3, help="independent fits; the lowest inertia wins (default 3)"
    )
    f.add_argument("--iterations", type=int, default=25, help="Lloyd iterations (faiss/torch; default 25)")
    f.add_argument(
        "--refine-iterations",
        type=int,
        default=2,
        help="faiss: when it fitted on a subsample (over 256 frames per unit), this many more iterations "
        "on every sampled frame (default 2)",
    )
    f.add_argument("--seed", type=int, default=0, help="seed of frame sampling and k-means (default 0)")
    f.add_argument("--batch-size", type=int, default=8, help="files per feature batch (default 8)")
    f.add_argument("--dedup", action="store_true", help="make the bundle deduplicate units by default")
    f.add_argument("--name", help="also register the bundle under this tokenizer name ($SLMTOK_HOME)")
    f.add_argument(
        "--replace-vocoder",
        action="store_true",
        help="-o is a bundle with a unit vocoder (trained on its old units, which new k-means units would "
        "not fit): drop that link (the vocoder's files stay where they are); without it such a bundle is refused",
    )
    f.add_argument("--json", action="store_true", help="print a JSON summary")
    f.set_defaults(run=run_fit)

    i = sub.add_parser("import", help="published scikit-learn k-means pickle (km.bin) -> slmtok safetensors")
    i.add_argument("pickle", help="a GSLM/textlesslib km.bin or fairseq *_km500.bin file")
    i.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    i.set_defaults(run=run_import)

    s = sub.add_parser("info", help="show a k-means file (slmtok safetensors or scikit-learn pickle)")
    s.add_argument("path", help="a k-means file: slmtok .safetensors or a scikit-learn km.bin")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(run=run_info)


def _say(line: str) -> None:
    print(f"slmtok kmeans: {line}", file=sys.stderr, flush=True)


def _feature_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.layer is not None:
        options["layer"] = args.layer
    if args.checkpoint:
        options["checkpoint"] = str(Path(args.checkpoint).resolve())
    if args.trust:
        options["trust"] = True
    return options


def run_fit(args: argparse.Namespace) -> int:
    import torch

    from slmtok.errors import SlmtokError
    from slmtok.inputs import collect
    from slmtok.kmeans.corpus_features import extract_samples
    from slmtok.kmeans.stream import fit_stream
    from slmtok.registry import FEATURES
    from slmtok.tokenizers.semantic.bundle import write_bundle
    from slmtok.tokenizers.semantic.user_registry import register_bundle

    if args.clusters < 2:
        raise SlmtokError("-k must be at least 2")
    items = collect(args.inputs)
    out = Path(args.output)
    _check_vocoder_link(out, args.replace_vocoder)
    out.mkdir(parents=True, exist_ok=True)
    options = _feature_options(args)
    device = args.device or "cpu"
    try:
        features = FEATURES.create(args.features, device=torch.device(device), **options)
    except TypeError:
        given = ", ".join(f"--{k}" for k in options) or "these options"
        raise SlmtokError(f"features {args.features!r} do not take {given}") from None
    _say(
        f"{len(items)} files, features {args.features}"
        + (f" layer {features.layer}" if hasattr(features, "layer") else "")
    )
    from slmtok.cli.commands import _progress

    # a line every 10 s when stderr is not a terminal (a bar on one): a long block or restart is never silent
    with _progress(None, "kmeans fit") as progress:
        progress.add_task("kmeans fit", total=None)
        sampler = extract_samples(
            items,
            features,
            out / "cache",
            budget=args.max_frames,
            seed=args.seed,
            batch_size=args.batch_size,
            fingerprint={"features": args.features, **{k: str(v) for k, v in options.items()}},
            log=_say,
        )
        km = fit_stream(
            [],
            args.clusters,
            sampler=sampler,
            restarts=args.restarts,
            backend=args.backend,
            device=args.device,
            seed=args.seed,
            log=_say,
            **({"n_iter": args.iterations} if args.backend in ("faiss", "torch") else {}),
            **({"refine_iter": args.refine_iterations} if args.backend == "faiss" else {}),
        )
    km.info.update(features=args.features, layer=getattr(features, "layer", None), corpus_files=len(items))
    km.save(out / "kmeans.safetensors", card=True)
    feature_spec = {"name": args.features, "options": options}
    name = args.name or "semantic-bundle"
    write_bundle(
        out,
        {
            "name": name,
            "features": feature_spec,
            "kmeans": "kmeans.safetensors",
            "vocoder": None,
            "dedup": bool(args.dedup),
            "license": "depends on the corpus it was fitted on",
            "source": f"slmtok kmeans fit ({len(items)} files)",
            "description": f"k-means ({args.clusters} units) over {args.features}"
            + (f" layer {features.layer}" if hasattr(features, "layer") else "")
            + " features",
        },
    )
    if args.name:
        register_bundle(args.name, out)
    summary = {
        "bundle": str(out),
        "name": name,
        "k": km.k,
        "dim": km.dim,
        "frames_sampled": km.info["n_samples"],
        "frames_seen": km.info["frames_seen"],
        "inertia_per_frame": km.info["inertia"],
        "restarts": [
            {"seed": r["seed"], "inertia": r["inertia"], "seconds": round(r["seconds"], 2)}
            for r in km.info["restarts"]
        ],
        "load": f"slmtok.load({name!r})"
        if args.name
        else f"slmtok.load('semantic-bundle', bundle={str(out)!r})",
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {out}: K={km.k}, D={km.dim}, inertia {km.info['inertia']:.5g}/frame; load with {summary['load']}"
        )
    return 0


def _check_vocoder_link(out: Path, replace: bool) -> None:
    """Refuse to re-fit k-means into a bundle whose unit vocoder was trained on its present units (the
    new units would not fit it) unless ``--replace-vocoder`` says to drop that link."""
    from slmtok.errors import SlmtokError
    from slmtok.tokenizers.semantic.bundle import BUNDLE_FILE, read_bundle

    if not (out / BUNDLE_FILE).exists():
        return
    vocoder = read_bundle(out).get("vocoder")
    if vocoder and not replace:
        raise SlmtokError(
            f"{out} is a bundle with a unit vocoder ({vocoder}) trained on its present units; new k-means "
            "units would not fit it: write to another folder, or pass --replace-vocoder to drop that link"
        )
    if vocoder:
        _say(
            f"dropping the vocoder link of {out} ({vocoder}): train one on the new units (slmtok vocoder train)"
        )


def run_import(args: argparse.Namespace) -> int:
    from slmtok.kmeans import load

    km = load(args.pickle)
    path = km.save(args.output, card=True)
    made_by = f", sklearn {km.info['sklearn_version']}" if km.info.get("sklearn_version") else ""
    print(f"wrote {path}: K={km.k}, D={km.dim} (from {args.pickle}{made_by})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from slmtok.kmeans import load

    km = load(args.path)
    data = {
        "path": args.path,
        "k": km.k,
        "dim": km.dim,
        **{k: v for k, v in km.info.items() if k != "restarts"},
    }
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for key, value in data.items():
            if value is not None and value != {}:  # unknown or empty: not shown (JSON keeps them)
                print(f"{key}: {value}")
    return 0
