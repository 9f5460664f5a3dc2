"""Name -> factory registries with lazy imports and entry-point plug-ins.

Built-ins are registered as ``"module:attribute"`` strings, so nothing heavy is imported until a name is
used. Third-party packages add entries through entry points (``[project.entry-points."slmtok.tokenizers"]``
and the like); those are discovered on the first lookup, never when slmtok is imported. A plug-in whose
name collides with a built-in is ignored with a warning.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from slmtok.errors import RegistryError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


@dataclass(frozen=True)
class Entry:
    """One registered name.

    ``target`` is a callable, a ``"module:attribute"`` string, or an entry point; ``defaults`` are
    keyword arguments bound to it (so that one class serves several names, e.g. two sample rates).
    """

    name: str
    target: Any
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    origin: str = "builtin"

    def resolve(self) -> Callable[..., Any]:
        """Import (if needed) and return the factory."""
        target = self.target
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        if isinstance(target, metadata.EntryPoint):
            return target.load()
        return target

    def create(self, **kwargs: Any) -> Any:
        """Call the factory with the entry's defaults overridden by ``kwargs``."""
        return self.resolve()(**{**self.defaults, **kwargs})


class Registry:
    """A registry of one kind of component (tokenizers, features, k-means backends, vocoders)."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def register(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        description: str = "",
        defaults: dict[str, Any] | None = None,
        exist_ok: bool = False,
        origin: str = "user",
    ) -> None:
        """Register ``factory`` under ``name``.

        Raises:
            ValueError: the name is not lowercase ``[a-z0-9._+-]`` or the factory is not callable.
            RegistryError: the name is taken and ``exist_ok`` is false.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lowercase letters, digits and . _ + -")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise ValueError(f"{self.kind} factory for {name!r} must be callable or 'module:attribute'")
        if name in self._entries and not exist_ok:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered; pass exist_ok=True to replace it"
            )
        self._entries[name] = Entry(name, factory, description, dict(defaults or {}), origin)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                warnings.warn(
                    f"plug-in {self.kind} {ep.name!r} from {ep.value} ignored: the name is taken",
                    stacklevel=3,
                )
                continue
            self._entries[ep.name] = Entry(ep.name, ep, f"plug-in ({ep.value})", origin="plugin")

    def get(self, name: str) -> Entry:
        """The entry registered under ``name`` (plug-ins are discovered on the first call)."""
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names())}"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``"dac-*"``)."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name).create(**kwargs)


TOKENIZERS = Registry("tokenizer", "slmtok.tokenizers")
FEATURES = Registry("feature extractor", "slmtok.features")
KMEANS_BACKENDS = Registry("k-means backend", "slmtok.kmeans")
VOCODERS = Registry("vocoder", "slmtok.vocoders")

#: Light modules (no heavy imports) whose ``register_builtins()`` lists each package's built-ins.
CATALOGS = (
    "slmtok.tokenizers.catalog",
    "slmtok.codecs.catalog",
    "slmtok.vocoders.catalog",
    "slmtok.catalog",
)


def _register_builtins() -> None:
    for module in CATALOGS:
        importlib.import_module(module).register_builtins()


_register_builtins()
