"""Built-in components of the core package: k-means backends (names -> lazy import paths)."""

from __future__ import annotations


def register_builtins() -> None:
    from slmtok.registry import KMEANS_BACKENDS

    k = "slmtok.kmeans"
    KMEANS_BACKENDS.register(
        "faiss", f"{k}.faiss_backend:fit_faiss", description="FAISS k-means", origin="builtin"
    )
    KMEANS_BACKENDS.register(
        "torch", f"{k}.torch_backend:fit_torch", description="Lloyd k-means in torch", origin="builtin"
    )
