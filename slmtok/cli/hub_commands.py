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
    report = []
    bar = _progress_bar()
    for name in args.names:
        card = hub.get_card(name)
        roles = args.role or [f.role for f in card.files]
        for role in roles:
            entry = card.file(role)
            if bar is None:
                hub.fetch(card, role, offline=args.offline or None)
            else:
                with bar:
                    task = bar.add_task(f"{card.name} {entry.filename}", total=None)
                    hub.fetch(
                        card,
                        role,
                        offline=args.offline or None,
                        progress=lambda done, total, task=task: bar.update(task, completed=done, total=total),
                    )
            report.append(hub.fetch_info(card, role))
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
