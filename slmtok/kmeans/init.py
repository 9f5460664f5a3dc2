"""Greedy k-means++ seeding (Arthur and Vassilvitskii, 2007; the greedy variant scikit-learn uses)."""

from __future__ import annotations

import math

import torch


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Pick ``k`` rows of ``x`` ``[N, D]`` as seeds. Each step draws ``2 + log k`` candidates with
    probability proportional to their squared distance to the seeds so far, and keeps the one that
    lowers the total squared distance most. Returns ``[k, D]``."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    norms = x.pow(2).sum(1)
    dist = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        total = float(dist.sum())
        if total > 0:
            candidates = torch.multinomial((dist / total).cpu(), trials, replacement=True, generator=gen)
        else:
            candidates = torch.randint(n, (trials,), generator=gen)
        candidates = candidates.to(x.device)
        to_candidates = (norms[candidates, None] + norms[None] - 2.0 * (x[candidates] @ x.T)).clamp_min(0)
        new = torch.minimum(dist[None], to_candidates)  # [trials, N]
        best = int(new.sum(1).argmin())
        chosen.append(int(candidates[best]))
        dist = new[best]
    return x[chosen].clone()
