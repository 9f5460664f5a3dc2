"""The Ray Data engine: shards flow through ``map_batches`` into tokenizer actors.

Each actor loads the tokenizer once (on its GPU when the cluster has GPUs) and encodes whole shards with
the same ``encode_shard`` as the local engine, writing each shard atomically to the shared output
folder; a shard that already exists is skipped, so a restarted job resumes. Point ``ray_address`` at a
cluster (``ray://host:10001`` or ``auto``) to spread the work over its machines; the output folder must
then be on storage every node sees.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from slmtok.corpus.plan import Plan
from slmtok.corpus.shard import ShardResult


class ShardEncoder:
    """A Ray actor: one tokenizer, many shards."""

    def __init__(
        self,
        out: str,
        plan: dict,
        tokenizer: str,
        options: dict,
        device: str,
        settings: dict,
        force: list[int] | None = None,
    ) -> None:
        import slmtok

        self.force = set(force or ())
        self.out = Path(out)
        self.plan = Plan.from_dict(plan)
        self.settings = settings
        self.tok = slmtok.load(tokenizer, device=device, **options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from slmtok.corpus.shard import encode_shard

        results = [
            asdict(
                encode_shard(
                    self.tok,
                    self.plan.shards[int(i)],
                    int(i),
                    self.out,
                    force=int(i) in self.force,
                    **self.settings,
                )
            )
            for i in batch["shard"]
        ]
        return {key: [r[key] for r in results] for key in results[0]} if results else {"shard": []}


def run_on_ray(
    plan: Plan,
    todo: list[int],
    out: Path,
    tokenizer: str,
    options: dict,
    device: str,
    settings: dict,
    address: str | None,
    actors: int | None,
    progress,
    force: list[int] | None = None,
) -> list[ShardResult]:
    """Encode the shards ``todo`` with Ray Data (those in ``force`` even if complete); returns their
    results."""
    try:
        import ray
    except ImportError:
        from slmtok.errors import SlmtokError

        raise SlmtokError("the ray engine needs Ray: pip install 'slmtok[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if not todo:
            return []
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        use_gpu = gpus > 0 and device != "cpu"
        count = actors or (gpus if use_gpu else max(1, int(ray.cluster_resources().get("CPU", 1)) // 2))
        count = max(1, min(count, len(todo)))
        ds = ray.data.from_items([{"shard": i} for i in todo], override_num_blocks=len(todo))
        kwargs = {"num_gpus": 1} if use_gpu else {"num_cpus": 1}
        ds = ds.map_batches(
            ShardEncoder,
            fn_constructor_kwargs={
                "out": str(out.resolve()),
                "plan": plan.to_dict(),
                "tokenizer": tokenizer,
                "options": options,
                "device": "cuda" if use_gpu else "cpu",
                "settings": settings,
                "force": list(force or ()),
            },
            batch_size=1,
            concurrency=count,
            **kwargs,
        )
        results = []
        for row in ds.iter_rows():
            result = ShardResult(**{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
            results.append(result)
            if progress is not None:
                progress(result, plan)
        return results
    finally:
        if started:
            ray.shutdown()
