"""Improved precision and recall (Kynkaanniemi et al., "Improved precision and recall metric
for assessing generative models", NeurIPS 2019), on VGG16 fc features.

Each set's manifold is the union of balls around its points with radius the distance to
the k-th nearest other point (k = 3). Precision = share of generated points inside the
real manifold; recall = share of real points inside the generated manifold. Distances are
computed in row x column batches, the column batches spread over the processes.
"""
from typing import Optional

import torch

from metrics import metric_utils

#----------------------------------------------------------------------------

def compute_distances(row_features: torch.Tensor, col_features: torch.Tensor, num_gpus: int = 1,
                      rank: int = 0, col_batch_size: int = 10000) -> Optional[torch.Tensor]:
    """Euclidean distances [R, C] between rows [R, D] and cols [C, D]; each process does the
    column batches rank, rank + num_gpus, ...; the result is complete on rank 0 (None elsewhere)."""
    num_cols = col_features.shape[0]
    num_batches = ((num_cols - 1) // col_batch_size // num_gpus + 1) * num_gpus
    # Pad to num_batches equal batches so every process runs the same collectives.
    padded = torch.nn.functional.pad(col_features, [0, 0, 0, -num_cols % num_batches])
    batches = padded.chunk(num_batches)
    dist_batches = []
    for col_batch in batches[rank::num_gpus]:
        dist = torch.cdist(row_features.unsqueeze(0), col_batch.unsqueeze(0))[0]
        if metric_utils.is_distributed(num_gpus):
            gathered = [torch.empty_like(dist) for _ in range(num_gpus)]
            torch.distributed.all_gather(gathered, dist)
        else:
            gathered = [dist]
        dist_batches.extend(gathered)
    if rank != 0:
        return None
    # dist_batches is ordered batch rank, rank+1, ... within each round: that is batch order.
    return torch.cat(dist_batches, dim=1)[:, :num_cols]

#----------------------------------------------------------------------------

def manifold_precision_recall(real_features: torch.Tensor, gen_features: torch.Tensor, nhood_size: int = 3,
                              row_batch_size: int = 10000, col_batch_size: int = 10000,
                              num_gpus: int = 1, rank: int = 0) -> dict:
    """{'precision', 'recall'} of gen_features [Ng, D] against real_features [Nr, D] (rank 0; nan elsewhere)."""
    results = dict()
    for name, manifold, probes in [('precision', real_features, gen_features), ('recall', gen_features, real_features)]:
        if manifold.shape[0] <= nhood_size:
            raise ValueError(f'{name} needs more than nhood_size={nhood_size} points in its manifold, got {manifold.shape[0]}')
        # Radius of each manifold point: distance to its k-th nearest neighbour (index 0 is itself).
        radii = []
        for batch in manifold.split(row_batch_size):
            dist = compute_distances(batch, manifold, num_gpus, rank, col_batch_size)
            radii.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values if rank == 0 else None)
        radii = torch.cat(radii) if rank == 0 else None
        # A probe is inside when it is within some manifold point's radius.
        inside = []
        for batch in probes.split(row_batch_size):
            dist = compute_distances(batch, manifold, num_gpus, rank, col_batch_size)
            inside.append((dist <= radii.unsqueeze(0)).any(dim=1) if rank == 0 else None)
        results[name] = float(torch.cat(inside).to(torch.float32).mean()) if rank == 0 else float('nan')
    return results

#----------------------------------------------------------------------------

def compute_pr(opts: metric_utils.MetricOptions, max_real: Optional[int], num_gen: int, nhood_size: int,
               row_batch_size: int, col_batch_size: int) -> tuple:
    """(precision, recall) of opts.G: VGG16 features of at most max_real reals and num_gen fakes."""
    detector_kwargs = dict(return_features=True)
    # float16 halves memory and time on CUDA, as officially; CPU kernels stay float32.
    dtype = torch.float16 if opts.device.type == 'cuda' else torch.float32
    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts, 'vgg16', detector_kwargs, max_items=max_real, capture_all=True).get_all_torch().to(dtype).to(opts.device)
    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts, 'vgg16', detector_kwargs, max_items=num_gen, capture_all=True).get_all_torch().to(dtype).to(opts.device)
    results = manifold_precision_recall(real_features, gen_features, nhood_size, row_batch_size, col_batch_size,
                                        opts.num_gpus, opts.rank)
    return results['precision'], results['recall']

#----------------------------------------------------------------------------
