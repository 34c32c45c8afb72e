"""The validation loss of a run: each rank scores its share, the sums are all-reduced."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from sdfl_lib.progress import tqdm
from sdfl_lib.runtime import make_loader
from sdfl_lib.train import distributed as D
from sdfl_lib.train.config import TrainConfig
from sdfl_lib.train.loss import PaperLoss, sample_losses
from sdfl_lib.train.sampler import shard_indices


def validation_loss(
    net: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    env: D.DistEnv,
    batch_size: int,
    loss: PaperLoss,
    autocast: Callable,
    to_input: Callable[[dict], torch.Tensor],
) -> dict[str, float]:
    """{"val_loss", "val_clf", "val_seg", "val_edge"} over the whole set (identical on all ranks,
    so every rank steps the scheduler and early stopping alike). Leaves `net` in eval mode."""
    shard = Subset(dataset, shard_indices(len(dataset), env.world_size, env.rank))  # type: ignore[arg-type]
    loader = make_loader(shard, batch_size=batch_size, workers=config.workers, device=env.device)
    limit = config.limit_val_batches or None
    totals = torch.zeros(5, dtype=torch.float64, device=env.device)
    net.eval()
    with torch.no_grad():
        bar = tqdm(islice(loader, limit), total=min(len(loader), limit or len(loader)),
                   desc="validation", leave=False, disable=not (env.is_main and config.progress))
        for batch in bar:
            with autocast():
                out = net(to_input(batch))
            s = sample_losses(out, batch).sums()
            zero = torch.zeros((), device=env.device)
            totals += torch.stack([s["n_images"], s["n_masks"], s["clf"], s["seg"],
                                   s.get("edge", zero)]).double()
    n_images, n_masks, clf, seg, edge = D.all_reduce_sum(totals, env).tolist()
    clf, seg, edge = clf / max(n_images, 1.0), seg / max(n_masks, 1.0), edge / max(n_masks, 1.0)
    return {"val_loss": loss.combine(clf, seg, edge), "val_clf": clf, "val_seg": seg, "val_edge": edge}
