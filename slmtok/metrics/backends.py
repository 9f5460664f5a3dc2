"""Optional model-based metric back-ends: how they are found, and how their absence is reported.

A back-end (Whisper ASR, resemblyzer, DNSMOS, ViSQOL) needs an extra package and a model file. When
either is missing it raises ``BackendUnavailable`` with a one-line reason (what to install, or which path
is missing); the bench records that reason instead of a number. Nothing here downloads anything.

Model paths are settings: an explicit argument, else an environment variable (``SLMTOK_WHISPER_MODEL``,
``SLMTOK_RESEMBLYZER_MODEL``, ``SLMTOK_DNSMOS_MODELS``, ``SLMTOK_VISQOL_MODEL``), else the model that ships
inside the back-end's package where there is one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtok.errors import SlmtokError

EXTRA = "pip install 'slmtok[eval]'"
#: webrtcvad 2.0.10 (imported by resemblyzer) reads its version with pkg_resources, which setuptools 81
#: removed; the webrtcvad-wheels build provides the same module without it
PKG_RESOURCES_HINT = (
    "webrtcvad 2.0.10 imports pkg_resources, gone from setuptools>=81: "
    "pip install --force-reinstall 'webrtcvad-wheels>=2.0.14' (slmtok[eval] lists it)"
)


class BackendUnavailable(SlmtokError, RuntimeError):
    """An optional metric back-end cannot run here: package or model missing (the message says which)."""


@dataclass(frozen=True)
class BackendStatus:
    """Whether a back-end can run, and what it runs: ``model`` path, package ``version``, or ``reason``."""

    name: str
    available: bool
    reason: str = ""
    model: str = ""
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "model": self.model,
            "version": self.version,
        }


def require(module: str, distribution: str) -> Any:
    """Import ``module`` or raise ``BackendUnavailable`` naming the pip distribution to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing and missing.split(".")[0] != module.split(".")[0] and _installed(module):
            # the package is there, but something it imports is not: say so, not "install it"
            hint = PKG_RESOURCES_HINT if missing.split(".")[0] == "pkg_resources" else EXTRA
            raise BackendUnavailable(
                f"{distribution} is installed but cannot be imported: it needs {missing!r}, which is "
                f"missing ({error.__class__.__name__}: {error}); {hint}"
            ) from None
        raise BackendUnavailable(
            f"{distribution} is not installed ({error.__class__.__name__}: {error}); {EXTRA}"
        ) from None


def _installed(module: str) -> bool:
    """Whether ``module``'s top-level package can be found (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def version_of(distribution: str) -> str:
    """Installed version of a pip distribution, or ``""``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def model_path(explicit: str | os.PathLike | None, env: str, default: Any = None) -> Path:
    """Resolve a model path: ``explicit``, else ``$env``, else ``default()`` (a callable) or ``default``.

    Raises ``BackendUnavailable`` when none is given or the path does not exist.
    """
    raw: Any = explicit or os.environ.get(env)
    if not raw and default is not None:
        try:
            raw = default() if callable(default) else default
        except Exception as error:  # noqa: BLE001 - the package that ships the model failed: say how
            raise BackendUnavailable(f"no model: {type(error).__name__}: {error}; set ${env}") from None
    if not raw:
        raise BackendUnavailable(f"no model path: pass one or set ${env}")
    path = Path(raw)
    if not path.exists():
        raise BackendUnavailable(f"model not found: {path} (set ${env} or pass a path)")
    return path


def probe(name: str, factory: Any, **options: Any) -> tuple[Any | None, BackendStatus]:
    """Build a back-end with ``factory(**options)``; return it and its status, or ``None`` and the reason.

    Any failure to build (missing package, missing or corrupt model) becomes an unavailable status with a
    one-line reason; it never raises.
    """
    try:
        backend = factory(**options)
    except BackendUnavailable as error:
        return None, BackendStatus(name, False, reason=str(error))
    except Exception as error:  # noqa: BLE001 - a broken install is reported, not fatal to the bench
        message = str(error).splitlines()[0] if str(error) else ""
        return None, BackendStatus(name, False, reason=f"{type(error).__name__}: {message}".strip())
    return backend, BackendStatus(
        name, True, model=str(getattr(backend, "model", "")), version=getattr(backend, "version", "")
    )
