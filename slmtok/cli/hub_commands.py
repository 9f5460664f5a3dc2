"""``slmtok download``: fetch published checkpoints into the cache ahead of time (or list the cards).

Only the standard library is imported at module level; ``slmtok.hub`` is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download",
        help="download published checkpoints (model cards) into the cache, verified",
        description="Download the files of model cards into $SLMTOK_HOME/hub (default ~/.cache/slmtok), "
        "resuming partial downloads and checking sizes and sha256.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="card names or card .toml files, e.g. dac-44khz")
    p.add_argument(
        "--role", action="append", help="only the file(s) with this role (repeatable), e.g. weights"
    )
    p.add_argument("--list", action="store_true", help="list the cards and what the cache holds, then exit")
    p.add_argument("--offline", action="store_true", help="do not use the network: check the cache only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--forget",
        action="store_true",
        help="drop the cached file(s) and what their first download recorded (revision, sha256) from the "
        "cache index, e.g. to accept a file its publisher changed on purpose; downloads nothing",
    )
    p.set_defaults(run=run_download)


def _progress_bar():
    """A rich progress bar on a terminal, else nothing (downloads stay quiet in logs)."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    )


def run_list(as_json: bool) -> int:
    from slmtok import hub

    rows = []
    for name in hub.list_cards():
        card = hub.get_card(name)
        files = [hub.fetch_info(card, f.role) for f in card.files]
        rows.append({"name": name, "family": card.family, "title": card.title, "files": files})
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        cached = sum(f["cached"] for f in r["files"])
        print(f"{r['name']:<{width}}  {r['family']:<8}  {cached}/{len(r['files'])} cached  {r['title']}")
    return 0


def _size(n: int | None) -> str:
    """Bytes as a short decimal size (``79.5 MB``), or ``size unknown``."""
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _plan(args: argparse.Namespace) -> list[Any]:
    """The files to fetch, in order, each once: every file each tokenizer needs (a semantic bundle:
    features checkpoint + k-means + unit vocoder), or with ``--role`` the card's files with those roles."""
    from slmtok import hub
    from slmtok.hub.download import cache_path
    from slmtok.hub.listing import NeededFile, needed_files

    plan: dict[str, NeededFile] = {}
    for name in args.names:
        if not args.role and _embedded(name):
            if not args.json:
                print(f"{name}: nothing to download (its weights are part of slmtok, or local files)")
            continue
        if args.role:
            card = hub.get_card(name)
            files = [NeededFile(card, card.file(r), card.family, str(cache_path(card, r))) for r in args.role]
        else:
            files = needed_files(name)
        for f in files:
            plan.setdefault(f.path, f)
    return list(plan.values())


def _embedded(name: str) -> bool:
    """Whether ``name`` is a registered tokenizer without a model card (nothing to download)."""
    from slmtok import hub

    if hub.has_card(name) or name.endswith(".toml"):
        return False
    import slmtok

    return name in slmtok.list_tokenizers()


def _print_plan(plan: list[Any]) -> None:
    from slmtok.hub.download import read_record

    sizes = [f.size for f in plan if f.size is not None]
    unknown = len(plan) - len(sizes)
    total = _size(sum(sizes)) if sizes else ""
    more = f" + {unknown} of unknown size" if unknown and sizes else " (sizes unknown)" if unknown else ""
    print(f"{_plural(len(plan), 'file')}: {total}{more}")
    width = max(len(f"{f.card.name}/{f.entry.filename}") for f in plan)
    for f in plan:
        state = "cached" if read_record(f.path) is not None else "to fetch"
        print(
            f"  {f.purpose:<9} {f.card.name + '/' + f.entry.filename:<{width}}  {_size(f.size):>12}  {state}"
        )
    sys.stdout.flush()


def _failure(failed: list[tuple[Any, Exception]], total: int) -> Exception:
    """One error naming every file that could not be fetched (URL and where to put it)."""
    from slmtok.hub.errors import DownloadError, OfflineError

    if len(failed) == 1:
        return failed[0][1]
    whys = {getattr(e, "why", "") for _, e in failed}
    offline = all(isinstance(e, OfflineError) for _, e in failed)
    if offline and len(whys) == 1:
        files = "; ".join(f"{f.entry.location} -> {f.path}" for f, _ in failed)
        return OfflineError(
            f"{len(failed)} of {total} files are not in the cache and cannot be downloaded ({whys.pop()}); "
            f"get them and put them at: {files}"
        )
    message = " | ".join(str(e) if f.path in str(e) else f"{e} (its place: {f.path})" for f, e in failed)
    kind = OfflineError if offline else DownloadError
    return kind(f"{len(failed)} of {total} files could not be fetched: {message}")


def run_download(args: argparse.Namespace) -> int:
    if args.list:
        return run_list(args.json)
    if not args.names:
        print("slmtok download: error: name at least one card (see slmtok download --list)", file=sys.stderr)
        return 2
    from slmtok import hub

    if args.forget:
        for name in args.names:
            card = hub.get_card(name)
            for role in args.role or [f.role for f in card.files]:
                had = hub.forget(card, role)
                print(
                    f"{card.name} {role}: {'record dropped' if had else 'no record'}; file removed from the cache"
                )
        return 0
    plan = _plan(args)
    if not plan:
        return 0
    if not args.json:
        _print_plan(plan)
    report, failed = [], []
    bar = _progress_bar()
    for f in plan:
        role = f.entry.role
        try:
            if bar is None:
                hub.fetch(f.card, role, offline=args.offline or None)
            else:
                with bar:
                    task = bar.add_task(f"{f.card.name} {f.entry.filename}", total=f.size)
                    hub.fetch(
                        f.card,
                        role,
                        offline=args.offline or None,
                        progress=lambda done, total, task=task: bar.update(task, completed=done, total=total),
                    )
        except (hub.OfflineError, hub.DownloadError, hub.ChecksumError) as error:
            failed.append((f, error))
            continue
        report.append(hub.fetch_info(f.card, role))
    if failed:
        raise _failure(failed, len(plan))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    how = {
        "sha256": "sha256 matches the card",
        "prefix": "sha256 prefix matches the card; full digest recorded",
        "recorded": "no sha256 published; digest recorded at first download",
    }
    for r in report:
        print(f"{r['card']} {r['role']}: {r['path']}")
        print(f"  sha256 {r['sha256']} ({how.get(r['verified'], r['verified'])})")
        if r.get("revision"):
            print(f"  revision {r['revision']}")
    return 0


def run_component_list(args: argparse.Namespace) -> int:
    """``slmtok list --kind features|vocoders [PATTERN] [--json|--markdown]``: the registered feature
    extractors or vocoders, their hub cards and whether their files are here (``hub.listing.component_rows``)."""
    from slmtok.errors import RegistryError
    from slmtok.hub.listing import component_rows

    rows = component_rows(args.kind, args.pattern)
    if not rows:
        raise RegistryError(
            f"no {args.kind} match {args.pattern!r} (slmtok list --kind {args.kind} shows them all)"
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    headers = ("name", "usable", "package", "cards", "description")
    cells = []
    for r in rows:
        if not r["package_installed"]:
            usable = "no package"
        elif r["available"] is None:
            usable = "no card"  # nothing to download: weight-free, or your own checkpoint=
        else:
            usable = "yes" if r["available"] else "download"
        cards = ", ".join(r["cards"]) or "-"
        cells.append((r["name"], usable, r["package"] or "-", cards, r["description"]))
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for c in cells:
            print("| " + " | ".join(c) + " |")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a file: whole rows
        console = Console(width=200)
    table = Table(title=f"slmtok {args.kind}")
    for header in headers:
        table.add_column(header, no_wrap=header != "description", overflow="fold")
    for c in cells:
        table.add_row(*c)
    console.print(table)
    return 0
