"""The paper's loss: lambda_clf * BCE(image) + lambda_seg * Dice(mask) (+ lambda_edge * Dice(edge))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sdfl_lib.models.base import ModelOutput


def dice_loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image Dice loss 1 - (2 sum(g p) + 1) / (sum(g^2) + sum(p^2) + 1), p = sigmoid(logit); (B,)."""
    p = torch.sigmoid(logit.float()).flatten(1)
    g = target.float().flatten(1)
    return 1.0 - (2.0 * (g * p).sum(1) + 1.0) / ((g * g).sum(1) + (p * p).sum(1) + 1.0)


@dataclass
class LossTerms:
    """The total loss and its unweighted parts (for logging), each a scalar tensor.

    `clf`, `seg`, `edge` are the unweighted means (BCE over images, Dice over images with a mask);
    `total` = lambda_clf * clf + lambda_seg * seg + lambda_edge * edge, with the normalisers given.
    """

    total: torch.Tensor
    clf: torch.Tensor
    seg: torch.Tensor
    edge: torch.Tensor | None


@dataclass
class SampleLosses:
    """Per-image terms of a batch: BCE, mask Dice, edge Dice (None without an edge head), has_mask."""

    bce: torch.Tensor
    seg: torch.Tensor
    edge: torch.Tensor | None
    has_mask: torch.Tensor

    def sums(self) -> dict[str, torch.Tensor]:
        """Summed terms and counts (what validation all-reduces)."""
        m = self.has_mask.float()
        out = {"n_images": torch.tensor(float(self.bce.numel()), device=m.device),
               "n_masks": m.sum(), "clf": self.bce.sum(), "seg": (self.seg * m).sum()}
        if self.edge is not None:
            out["edge"] = (self.edge * m).sum()
        return out


def sample_losses(output: ModelOutput, batch: dict) -> SampleLosses:
    """Per-image loss terms; label-only fakes (`has_mask` False) are flagged so only BCE counts."""
    label = batch["label"].to(output.image_logit.device).float().reshape(-1)
    bce = F.binary_cross_entropy_with_logits(
        output.image_logit.float().reshape(-1), label, reduction="none"
    )
    mask = batch["mask"].to(output.mask_logit.device)
    mask_logit = output.mask_logit
    if mask_logit.shape[-2:] != mask.shape[-2:]:
        mask_logit = F.interpolate(mask_logit.float(), size=mask.shape[-2:], mode="bilinear")
    seg = dice_loss(mask_logit, mask)
    edge = None
    if output.edge_logit is not None:
        gt_edge = batch["edge"].to(output.edge_logit.device).float()
        if gt_edge.shape[-2:] != output.edge_logit.shape[-2:]:
            # Max-pooling keeps thin contour bands that nearest-neighbour subsampling would drop.
            gt_edge = F.adaptive_max_pool2d(gt_edge, output.edge_logit.shape[-2:])
        edge = dice_loss(output.edge_logit, gt_edge)
    has_mask = torch.as_tensor(batch["has_mask"], device=bce.device).reshape(-1).bool()
    return SampleLosses(bce=bce, seg=seg, edge=edge, has_mask=has_mask)


class PaperLoss:
    """lambda_clf * BCE(image logit, label) + lambda_seg * Dice(mask) [+ lambda_edge * Dice(edge)].

    BCE is averaged over all images; Dice per image, averaged over images with a mask (authentic
    images and fakes with a mask); label-only fakes contribute only the image term. Give
    `n_images`/`n_masks` to normalise by a larger batch than the one seen (gradient accumulation and
    DDP pass the global counts, so the summed gradients equal the full-batch gradient).
    """

    def __init__(self, lambda_clf: float = 0.04, lambda_seg: float = 0.16, lambda_edge: float = 0.8):
        self.lambda_clf = lambda_clf
        self.lambda_seg = lambda_seg
        self.lambda_edge = lambda_edge

    def __call__(
        self,
        output: ModelOutput,
        batch: dict,
        n_images: float | None = None,
        n_masks: float | None = None,
    ) -> LossTerms:
        """The loss of one batch and its parts."""
        terms = sample_losses(output, batch)
        m = terms.has_mask.float()
        n_images = float(terms.bce.numel()) if n_images is None else float(n_images)
        n_masks = float(m.sum().item()) if n_masks is None else float(n_masks)
        clf = terms.bce.sum() / max(n_images, 1.0)
        seg = (terms.seg * m).sum() / max(n_masks, 1.0)
        total = self.lambda_clf * clf + self.lambda_seg * seg
        edge = None
        if terms.edge is not None:
            edge = (terms.edge * m).sum() / max(n_masks, 1.0)
            total = total + self.lambda_edge * edge
        return LossTerms(total=total, clf=clf, seg=seg, edge=edge)

    def combine(self, clf: float, seg: float, edge: float | None) -> float:
        """Weighted total from mean terms (validation)."""
        total = self.lambda_clf * clf + self.lambda_seg * seg
        return total + (self.lambda_edge * edge if edge is not None else 0.0)
