"""Download, cache and verify the files that model cards name.

Files go to ``$SLMTOK_HOME/hub/<card name>/<filename>``. A file is fetched from ``url`` over HTTP(S) (or
copied from ``file://``), resuming an interrupted download from its ``.part`` file with a ``Range``
request, or from the Hugging Face hub with ``huggingface_hub`` (which resumes on its own). A download
only takes its final name once its size and sha256 match the card; a card without a sha256 gets the
digest of the first download recorded (and a ``RecordedChecksumWarning``), and later uses are checked
against that record. Beside each file a small JSON record keeps its sha256, size and how it was
verified, so a cached file is not re-hashed on every load unless it changed.

Offline (``SLMTOK_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, ``offline=True``, or no network), a missing file
raises ``OfflineError`` with one line naming the file, its URL and the path to put it at; a file put
there by hand is verified like a download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.hub import slmtok_home
from slmtok.hub.cards import CardFile, ModelCard, get_card
from slmtok.hub.errors import ChecksumError, DownloadError, OfflineError

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]


class RecordedChecksumWarning(UserWarning):
    """A file whose card gives no sha256: its digest was recorded at first download."""


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``SLMTOK_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    if offline is not None:
        return offline
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("SLMTOK_OFFLINE", "HF_HUB_OFFLINE")
    )


def cache_path(name: str | os.PathLike | ModelCard, role: str = "weights") -> Path:
    """Where ``fetch`` puts (and looks for) the card's file with ``role``."""
    card = get_card(name)
    return slmtok_home() / "hub" / card.name / card.file(role).filename


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.record.json")


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The verification record of a cached file, if it has one and the file is unchanged since."""
    path = Path(path)
    try:
        record = json.loads(_record_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None
    return record


def is_sha256_verified(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a cached file whose full sha256 matched the sha256 its card publishes."""
    record = read_record(path)
    return bool(record and record.get("verified") == "sha256")


def _verify(card: ModelCard, entry: CardFile, path: Path, digest: str, previous: dict | None) -> str:
    """Check a file's digest against the card (or the first-download record); return how it was verified."""
    size = path.stat().st_size
    what = f"{card.name}: {entry.filename} at {path}"
    if entry.size is not None and size != entry.size:
        raise ChecksumError(
            f"{what} has {size} bytes, its card says {entry.size}; delete it and download again"
        )
    if entry.sha256:
        if digest != entry.sha256:
            raise ChecksumError(
                f"{what} has sha256 {digest[:16]}..., its card says {entry.sha256[:16]}...; refusing it"
            )
        return "sha256"
    if entry.sha256_prefix:
        if not digest.startswith(entry.sha256_prefix):
            raise ChecksumError(
                f"{what} has sha256 {digest[:16]}..., its card says it starts with {entry.sha256_prefix}; refusing it"
            )
        return "prefix"
    if previous and previous.get("sha256") and previous["sha256"] != digest:
        raise ChecksumError(
            f"{what} changed: sha256 {digest[:16]}... differs from the {previous['sha256'][:16]}... recorded at first download"
        )
    return "recorded"


def _write_record(path: Path, digest: str, verified: str, source: str) -> dict[str, Any]:
    stat = path.stat()
    record = {
        "sha256": digest,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "verified": verified,
        "source": source,
    }
    with atomic_path(_record_path(path)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _stale_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        return None


def _offline_error(card: ModelCard, entry: CardFile, target: Path, why: str) -> OfflineError:
    return OfflineError(
        f"{card.name}: {entry.filename} is not in the cache and cannot be downloaded ({why}); "
        f"get it from {entry.location} and put it at {target}"
    )


def fetch(
    name: str | os.PathLike | ModelCard,
    role: str = "weights",
    *,
    offline: bool | None = None,
    progress: Progress | None = None,
) -> Path:
    """Path of the card's ``role`` file in the cache, downloading and verifying it first if needed.

    Args:
        name: a card name (``slmtok.hub.list_cards()``), a card file path, or a ``ModelCard``.
        role: which of the card's files (``"weights"``, ``"config"``, ...).
        offline: never touch the network (default: from ``SLMTOK_OFFLINE`` / ``HF_HUB_OFFLINE``).
        progress: called as ``progress(bytes_done, bytes_total_or_None)`` while downloading over HTTP.

    Raises:
        OfflineError: the file is missing and cannot be downloaded (message: file, URL, where to put it).
        ChecksumError: the file's size or sha256 does not match its card (or its first-download record).
        DownloadError: the server refused the download.
    """
    card = get_card(name)
    entry = card.file(role)
    target = cache_path(card, role)
    if is_offline(offline) and not target.is_file():
        raise _offline_error(card, entry, target, "offline: SLMTOK_OFFLINE or HF_HUB_OFFLINE is set")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        if target.is_file():
            record = read_record(target)
            if record is None:  # put there by hand, or changed since: hash it again
                digest = sha256_file(target)
                previous = _stale_record(target)
                verified = _verify(card, entry, target, digest, previous)
                record = _write_record(target, digest, verified, "found in cache")
                _warn_if_recorded(card, entry, target, record, first=previous is None)
            else:
                _verify(card, entry, target, record["sha256"], record)
            return target
        if is_offline(offline):
            raise _offline_error(card, entry, target, "offline: SLMTOK_OFFLINE or HF_HUB_OFFLINE is set")
        if entry.url:
            _download_url(card, entry, target, progress)
        else:
            _download_hf(card, entry, target)
        digest = sha256_file(target)
        try:
            verified = _verify(card, entry, target, digest, None)
        except ChecksumError:
            target.unlink(missing_ok=True)
            raise
        record = _write_record(target, digest, verified, entry.location)
        _warn_if_recorded(card, entry, target, record, first=True)
        return target


def _warn_if_recorded(card: ModelCard, entry: CardFile, target: Path, record: dict, *, first: bool) -> None:
    if record["verified"] == "recorded" and first:
        warnings.warn(
            f"{card.name}: {entry.filename} has no published sha256; recorded sha256 {record['sha256']} "
            f"at first download ({target})",
            RecordedChecksumWarning,
            stacklevel=3,
        )


class _lock:  # noqa: N801 - a context manager that reads like a function
    """An exclusive ``flock`` on ``<file>.lock`` so two processes never write the same download."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(f".{target.name}.lock")

    def __enter__(self) -> None:
        self.handle = open(self.path, "a+b")  # noqa: SIM115 - closed in __exit__
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock here (e.g. Windows): go on unlocked
            pass

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _download_url(card: ModelCard, entry: CardFile, target: Path, progress: Progress | None) -> None:
    """HTTP(S) or file:// download into ``<target>.part``, resumed with a Range request, then renamed."""
    import http.client
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "slmtok"}
    if start and not entry.url.startswith("file://"):
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - card URLs are https/http/file
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the part file is already whole
            os.replace(part, target)
            return
        raise DownloadError(
            f"{card.name}: downloading {entry.url} failed: HTTP {error.code} {error.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if entry.url.startswith("file://"):
            raise DownloadError(f"{card.name}: cannot read {entry.url}: {reason}") from None
        raise _offline_error(card, entry, target, f"no network: {reason}") from None
    with response:
        status = getattr(response, "status", None) or 200
        resumed = bool(start) and status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) + (start if resumed else 0)) if length else None
        done = start if resumed else 0
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as error:  # connection lost: keep the part file
            raise DownloadError(
                f"{card.name}: download of {entry.url} interrupted after {done} bytes ({error}); run again to resume"
            ) from None
    if total is not None and done < total:
        raise DownloadError(
            f"{card.name}: download of {entry.url} stopped at {done} of {total} bytes; run again to resume"
        )
    os.replace(part, target)


def _download_hf(card: ModelCard, entry: CardFile, target: Path) -> None:
    """Download with ``huggingface_hub`` into a staging folder beside ``target``, then move it there."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - a declared dependency
        raise DownloadError("huggingface_hub is needed to download from the Hugging Face hub") from None
    staging = target.parent / ".hf"
    try:
        path = hf_hub_download(
            repo_id=entry.hf_repo,
            filename=entry.hf_filename,
            revision=entry.revision or None,
            local_dir=staging,
        )
    except LocalEntryNotFoundError:  # the hub could not be reached and nothing is cached
        raise _offline_error(card, entry, target, "Hugging Face hub unreachable") from None
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DownloadError(f"{card.name}: {entry.location}: {first}") from None
    except Exception as error:  # noqa: BLE001 - connection errors come in many types
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _offline_error(card, entry, target, f"Hugging Face hub unreachable: {first}") from None
    shutil.move(path, target)


def fetch_info(name: str | os.PathLike | ModelCard, role: str = "weights") -> dict[str, Any]:
    """What the cache holds for a card's file: path, whether cached, sha256 and how it was verified."""
    card = get_card(name)
    entry = card.file(role)
    path = cache_path(card, role)
    record = read_record(path) if path.is_file() else None
    return {
        "card": card.name,
        "role": role,
        "filename": entry.filename,
        "url": entry.location,
        "path": str(path),
        "cached": path.is_file(),
        "sha256": (record or {}).get("sha256") or entry.sha256,
        "verified": (record or {}).get("verified", ""),
    }
