"""Download, cache and verify the files that model cards name.

Files go to ``$SLMTOK_HOME/hub/<card name>/<filename>``. A file is fetched from ``url`` over HTTP(S) (or
copied from ``file://``), resuming an interrupted download from its ``.part`` file with a ``Range``
request, or from the Hugging Face hub with ``huggingface_hub`` at the card's pinned ``revision`` (a
commit; for an LFS file the download must also match the sha256 the hub lists, its ETag). A download
only takes its final name once its size and sha256 match the card.

Where the card gives no sha256 (or no revision), what the first download resolved is recorded in one
cache index, ``$SLMTOK_HOME/index.json`` (written atomically, under a lock): card, URL, the Hugging Face
commit, sha256, size and time. Every later use is checked against it: a cached file that changed
(edited, replaced, even with its modification time restored) is re-hashed and refused if its sha256
differs; a re-download must give the recorded sha256 from the recorded commit. ``forget(name)`` drops
a record, to accept a file the publisher changed on purpose.

Cache files are never written through a link: ``.part`` and lock files are opened with ``O_NOFOLLOW``
(a link or hard link planted there is removed and the file recreated with ``O_EXCL``), a download
takes its final name with ``os.replace`` (which replaces a link, never follows it), and a link at a
file's final name is refused.

Offline (``SLMTOK_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, ``offline=True``, or no network), a missing file
raises ``OfflineError`` with one line naming the file, its URL and the path to put it at; a file put
there by hand is verified like a download.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmtok.atomic import atomic_path
from slmtok.hub import slmtok_home
from slmtok.hub.cards import CardFile, ModelCard, get_card
from slmtok.hub.errors import CacheError, ChecksumError, DownloadError, OfflineError

CHUNK = 1 << 20
INDEX_NAME = "index.json"
Progress = Callable[[int, int | None], None]
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


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


# ------------------------------------------------------------------------------------------ the index
def index_path() -> Path:
    """The cache index: ``$SLMTOK_HOME/index.json``."""
    return slmtok_home() / INDEX_NAME


def _key(path: Path) -> str | None:
    """A cached file's key in the index (its path under ``$SLMTOK_HOME``), or ``None`` outside it."""
    home = os.path.abspath(slmtok_home())
    full = os.path.abspath(path)
    if os.path.commonpath([home, full]) != home:
        return None
    return Path(os.path.relpath(full, home)).as_posix()


def _read_index() -> dict[str, dict[str, Any]]:
    path = index_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CacheError(f"cannot read the cache index {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError("not an object of records")
    except ValueError as error:
        raise CacheError(
            f"the cache index {path} is damaged ({error}); remove it to re-record every cached file"
        ) from None
    return data


def _update_index(key: str, record: dict[str, Any] | None) -> None:
    """Set (or with ``None`` remove) one record, atomically, under the index lock."""
    home = slmtok_home()
    home.mkdir(parents=True, exist_ok=True)
    with _lock(home / f".{INDEX_NAME}"):
        data = _read_index()
        if record is None:
            data.pop(key, None)
        else:
            data[key] = record
        with atomic_path(index_path()) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _stat_key(st: os.stat_result) -> dict[str, int]:
    # ctime changes on every write or rename and cannot be set back by the user (unlike mtime)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _regular(path: Path) -> os.stat_result | None:
    """``lstat`` of ``path`` if it is a regular file, ``None`` if nothing is there; a link -> CacheError."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise CacheError(
            f"{path} is a symbolic link; slmtok's cache holds only regular files: remove it and fetch again "
            "(or copy the file there)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"{path} is not a regular file; remove it and fetch again")
    return st


def index_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The index record of a cached file (whether or not the file changed since), or ``None``."""
    key = _key(Path(path))
    return None if key is None else _read_index().get(key)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The index record of a cached file, if it has one and the file is unchanged since it was checked."""
    path = Path(path)
    record = index_record(path)
    try:
        st = _regular(path)
    except CacheError:
        return None
    if record is None or st is None or any(record.get(k) != v for k, v in _stat_key(st).items()):
        return None
    return record


def is_sha256_verified(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a cached file whose full sha256 matched the sha256 its card publishes."""
    record = read_record(path)
    return bool(record and record.get("verified") == "sha256")


def forget(name: str | os.PathLike | ModelCard, role: str = "weights") -> bool:
    """Drop the index record of a card's file (e.g. to accept a file its publisher changed on purpose);
    the file itself is removed too. Returns whether there was a record."""
    target = cache_path(name, role)
    key = _key(target)
    had = index_record(target) is not None
    if key is not None:
        _update_index(key, None)
    if os.path.lexists(target):  # a file, or a link planted there (the link goes, never its target)
        target.unlink()
    return had


# ------------------------------------------------------------------------------------------ checks
def _verify(card: ModelCard, entry: CardFile, path: Path, digest: str, previous: dict | None) -> str:
    """Check a file's digest against the card and the index record; return how it was verified."""
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
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise ChecksumError(
            f"{what} has sha256 {digest[:16]}..., its card says it starts with {entry.sha256_prefix}; refusing it"
        )
    if previous and previous.get("sha256") and previous["sha256"] != digest:
        raise ChecksumError(
            f"{what} changed: sha256 {digest[:16]}... differs from the {previous['sha256'][:16]}... recorded at "
            f"first download in {index_path()}; refusing it (if the publisher changed it on purpose: "
            f"slmtok download {card.name} --forget)"
        )
    return "prefix" if entry.sha256_prefix else "recorded"


def _legacy_sidecar(path: Path) -> dict[str, Any] | None:
    """The ``.<file>.record.json`` that slmtok before the cache index kept beside a file: its sha256 is
    still what the file must match (moved into the index, and the sidecar removed, once checked)."""
    sidecar = path.with_name(f".{path.name}.record.json")
    try:
        if not stat.S_ISREG(os.lstat(sidecar).st_mode):
            return None
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    return {"sha256": record["sha256"], "source": record.get("source", ""), "legacy_sidecar": str(sidecar)}


def _record(
    card: ModelCard, entry: CardFile, path: Path, digest: str, verified: str, source: str, revision: str
) -> dict[str, Any]:
    record = {
        "card": card.name,
        "filename": entry.filename,
        "url": entry.location,
        "revision": revision,
        "sha256": digest,
        "verified": verified,
        "source": source,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_stat_key(os.stat(path)),
    }
    key = _key(path)
    if key is not None:
        _update_index(key, record)
        Path(path.with_name(f".{path.name}.record.json")).unlink(missing_ok=True)
    return record


def _offline_why(offline: bool | None) -> str:
    """Why the network is not used: the caller said so, or the environment does."""
    if offline:
        return "offline: asked not to use the network (offline=True, --offline)"
    return "offline: SLMTOK_OFFLINE or HF_HUB_OFFLINE is set"


def _offline_error(card: ModelCard, entry: CardFile, target: Path, why: str) -> OfflineError:
    error = OfflineError(
        f"{card.name}: {entry.filename} is not in the cache and cannot be downloaded ({why}); "
        f"get it from {entry.location} and put it at {target}"
    )
    error.why = why  # type: ignore[attr-defined] - the reason alone, for a message naming many files
    return error


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
        ChecksumError: the file's size or sha256 does not match its card (or the index's record).
        CacheError: a link or other non-regular file sits at the file's place in the cache.
        DownloadError: the server refused the download.
    """
    card = get_card(name)
    entry = card.file(role)
    target = cache_path(card, role)
    if is_offline(offline) and _regular(target) is None:
        raise _offline_error(card, entry, target, _offline_why(offline))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        previous = index_record(target) or _legacy_sidecar(target)
        if previous and entry.revision and previous.get("revision") not in (None, "", entry.revision):
            # the card now pins another commit: the cached file (from the old one) is stale
            if is_offline(offline):
                raise _offline_error(
                    card, entry, target, f"the cached file is from revision {previous['revision']}"
                )
            target.unlink(missing_ok=True)
            previous = None
        if _regular(target) is not None:
            record = read_record(target)
            if record is not None:  # unchanged since it was checked: check the card still agrees
                _verify(card, entry, target, record["sha256"], record)
                return target
            digest = sha256_file(target)  # put there by hand, or changed since: hash it again
            verified = _verify(card, entry, target, digest, previous)
            source = (previous or {}).get("source") or "found in cache"
            revision = (previous or {}).get("revision") or entry.revision
            record = _record(card, entry, target, digest, verified, source, revision)
            _warn_if_recorded(card, entry, target, record, first=previous is None)
            return target
        if is_offline(offline):
            raise _offline_error(card, entry, target, _offline_why(offline))
        why = unreachable(entry.url or _hf_endpoint())
        if why:
            raise _offline_error(card, entry, target, f"no network: {why}")
        revision = entry.revision
        if entry.url:
            _download_url(card, entry, target, progress)
        else:
            revision = _download_hf(
                card, entry, target, entry.revision or (previous or {}).get("revision", "")
            )
        digest = sha256_file(target)
        try:
            verified = _verify(card, entry, target, digest, previous)
        except ChecksumError:
            target.unlink(missing_ok=True)
            raise
        record = _record(card, entry, target, digest, verified, entry.location, revision)
        _warn_if_recorded(card, entry, target, record, first=previous is None)
        return target


def _warn_if_recorded(card: ModelCard, entry: CardFile, target: Path, record: dict, *, first: bool) -> None:
    if record["verified"] != "sha256" and first:
        warnings.warn(
            f"{card.name}: {entry.filename} has no published sha256; recorded sha256 {record['sha256']} "
            f"at first download ({target}) in {index_path()}",
            RecordedChecksumWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------------------------ network
#: seconds one probe may take (name lookup + TCP connect); ``SLMTOK_CONNECT_TIMEOUT`` overrides it
PROBE_TIMEOUT = 0.5
_PROBES: dict[tuple[str, int], str] = {}


def _hf_endpoint() -> str:
    """The Hugging Face endpoint ``huggingface_hub`` downloads from (``HF_ENDPOINT``)."""
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def unreachable(url: str) -> str:
    """Why the server of ``url`` cannot be reached, or ``""`` when it can (or cannot be probed).

    One name lookup and TCP connect to the host, at most ``SLMTOK_CONNECT_TIMEOUT`` seconds (default 0.5),
    run in a daemon thread so a hanging DNS lookup cannot hold the caller. The answer is kept for the rest
    of the process (except for loopback hosts, whose ports come and go). ``file://`` URLs and hosts
    reached through a proxy (``https_proxy`` ...) are not probed: the download itself tells."""
    import ipaddress
    import socket
    import threading
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    key = (host, port)
    if key in _PROBES:
        return _PROBES[key]
    try:
        timeout = float(os.environ.get("SLMTOK_CONNECT_TIMEOUT", "") or PROBE_TIMEOUT)
    except ValueError:
        timeout = PROBE_TIMEOUT
    result: list[str] = []

    def probe() -> None:
        try:
            with socket.create_connection(key, timeout=timeout):
                result.append("")
        except OSError as error:
            result.append(f"cannot reach {host}: {error.strerror or error}")

    thread = threading.Thread(target=probe, name="slmtok-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    why = result[0] if result else f"cannot reach {host}: no answer within {timeout:g} s"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        _PROBES[key] = why
    return why


class _quiet_hub:  # noqa: N801 - a context manager that reads like a function
    """Silences ``huggingface_hub``'s retry warnings for one download (its logger's level is restored on
    exit; nothing else is touched): the failure itself is reported once, as an ``OfflineError``."""

    def __enter__(self) -> None:
        import logging

        self.logger = logging.getLogger("huggingface_hub")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


# ------------------------------------------------------------------------------------------ files
def _open_new(path: Path) -> int:
    """Create ``path`` afresh (``O_EXCL | O_NOFOLLOW``): whatever was there (a link) is removed first."""
    if os.path.lexists(path):
        os.unlink(path)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as error:
        raise CacheError(f"cannot create {path}: {error.strerror}") from None


def _open_part(part: Path) -> tuple[int, int]:
    """Open ``<file>.part`` for appending without following links: ``(fd, bytes already there)``. A link,
    a hard link (more than one name) or anything not a regular file is removed and a new file created."""
    try:
        fd = os.open(part, os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return _open_new(part), 0
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise CacheError(f"cannot open {part}: {error.strerror}") from None
        if os.path.isdir(part) and not os.path.islink(part):
            raise CacheError(f"{part} is a folder; remove it and fetch again") from None
        return _open_new(part), 0
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        return _open_new(part), 0
    return fd, st.st_size


class _lock:  # noqa: N801 - a context manager that reads like a function
    """An exclusive ``flock`` on ``.<file>.lock`` so two processes never write the same download. The
    lock file is opened without following links (one planted there is replaced)."""

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(f".{target.name}.lock")

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise CacheError(f"cannot create {self.path}: {error.strerror}") from None
            os.close(_open_new(self.path))
            self.fd = os.open(self.path, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no flock here (e.g. Windows): go on unlocked
            pass

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _download_url(card: ModelCard, entry: CardFile, target: Path, progress: Progress | None) -> None:
    """HTTP(S) or file:// download into ``<target>.part``, resumed with a Range request, then renamed."""
    import http.client
    import urllib.error
    import urllib.request

    part = target.with_name(target.name + ".part")
    fd, start = _open_part(part)
    with os.fdopen(fd, "ab") as out:
        headers = {"User-Agent": "slmtok"}
        if start and not entry.url.startswith("file://"):
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(entry.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - card URLs are https/http/file
        except urllib.error.HTTPError as error:
            if error.code == 416 and start:  # the part file is already whole
                out.close()
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
            if not resumed:
                out.truncate(0)  # O_APPEND: writes go to the (new) end
            length = response.headers.get("Content-Length")
            total = (int(length) + (start if resumed else 0)) if length else None
            done = start if resumed else 0
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            except (OSError, http.client.HTTPException) as error:  # connection lost: keep the part file
                raise DownloadError(
                    f"{card.name}: download of {entry.url} interrupted after {done} bytes ({error}); "
                    "run again to resume"
                ) from None
    if total is not None and done < total:
        raise DownloadError(
            f"{card.name}: download of {entry.url} stopped at {done} of {total} bytes; run again to resume"
        )
    os.replace(part, target)


def _download_hf(card: ModelCard, entry: CardFile, target: Path, revision: str) -> str:
    """Download with ``huggingface_hub`` at ``revision`` (or the commit ``main`` points to now, resolved
    first) into a fresh staging folder beside ``target``, then move it there. Returns the commit."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:  # pragma: no cover - a declared dependency
        raise DownloadError("huggingface_hub is needed to download from the Hugging Face hub") from None
    staging = Path(tempfile.mkdtemp(prefix=".hf-", dir=target.parent))  # new, private: nothing planted
    try:
        with _quiet_hub():
            return _download_hf_quietly(card, entry, target, revision, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_hf_quietly(card: ModelCard, entry: CardFile, target: Path, revision: str, staging: Path) -> str:
    import huggingface_hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        url = huggingface_hub.hf_hub_url(entry.hf_repo, entry.hf_filename, revision=revision or "main")
        meta = huggingface_hub.get_hf_file_metadata(url)
        revision = revision or meta.commit_hash or ""
        if not revision:
            raise DownloadError(f"{card.name}: the hub gave no commit for {entry.location}")
        path = huggingface_hub.hf_hub_download(
            repo_id=entry.hf_repo, filename=entry.hf_filename, revision=revision, local_dir=staging
        )
        _regular(Path(path))
        lfs = _lfs_sha256(meta)
        if lfs and sha256_file(path) != lfs:
            raise ChecksumError(
                f"{card.name}: {entry.location} at {revision[:12]} does not match the sha256 the hub lists for "
                f"it ({lfs[:16]}...); refusing it"
            )
        os.replace(path, target)
    except (LocalEntryNotFoundError, OfflineError):  # the hub could not be reached and nothing is cached
        raise _offline_error(card, entry, target, "Hugging Face hub unreachable") from None
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DownloadError(f"{card.name}: {entry.location}: {first}") from None
    except (DownloadError, CacheError, ChecksumError):
        raise
    except Exception as error:  # noqa: BLE001 - connection errors come in many types
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _offline_error(card, entry, target, f"Hugging Face hub unreachable: {first}") from None
    return revision


def _lfs_sha256(meta: Any) -> str:
    """The sha256 the hub lists for an LFS file (its ETag is the LFS object id), or ``""``."""
    etag = str(getattr(meta, "etag", "") or "").removeprefix("W/").strip('"').lower()
    return etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else ""


def fetch_info(name: str | os.PathLike | ModelCard, role: str = "weights") -> dict[str, Any]:
    """What the cache holds for a card's file: path, whether cached, sha256, revision, how it was verified."""
    card = get_card(name)
    entry = card.file(role)
    path = cache_path(card, role)
    try:
        cached = _regular(path) is not None
    except CacheError:
        cached = False
    record = (index_record(path) or {}) if cached else {}
    return {
        "card": card.name,
        "role": role,
        "filename": entry.filename,
        "url": entry.location,
        "path": str(path),
        "cached": cached,
        "sha256": record.get("sha256") or entry.sha256,
        "revision": record.get("revision") or entry.revision,
        "verified": record.get("verified", ""),
    }
