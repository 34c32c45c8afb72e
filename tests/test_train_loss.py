"""The paper's loss: Dice formula, label-only fakes without mask loss, global normalisers."""

from __future__ import annotations

import torch

from sdfl_lib.models.base import ModelOutput
from sdfl_lib.train.loss import PaperLoss, dice_loss, sample_losses


def _batch(labels, has_mask, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    mask = (torch.rand(n, 1, size, size, generator=g) > 0.7).float()
    for i, (lab, hm) in enumerate(zip(labels, has_mask, strict=True)):
        if lab == 0 or not hm:
            mask[i] = 0
    return {"mask": mask, "edge": mask.clone(), "label": torch.tensor(labels, dtype=torch.float32),
            "has_mask": torch.tensor(has_mask)}


def _output(n, size=8, seed=1, edge=False):
    g = torch.Generator().manual_seed(seed)
    return ModelOutput(
        image_logit=torch.randn(n, 1, generator=g, requires_grad=True),
        mask_logit=torch.randn(n, 1, size, size, generator=g, requires_grad=True),
        edge_logit=torch.randn(n, 1, size // 4, size // 4, generator=g) if edge else None,
    )


def test_dice_matches_the_papers_formula():
    logit = torch.randn(2, 1, 5, 5)
    g = (torch.rand(2, 1, 5, 5) > 0.5).float()
    p = torch.sigmoid(logit)
    expect = 1 - (2 * (g * p).sum((1, 2, 3)) + 1) / ((g**2).sum((1, 2, 3)) + (p**2).sum((1, 2, 3)) + 1)
    torch.testing.assert_close(dice_loss(logit, g), expect)
    # A perfect, confident prediction costs (almost) nothing; the opposite costs (almost) 1.
    assert dice_loss(g * 40 - 20, g).max() < 1e-3
    assert dice_loss(20 - g * 40, g).min() > 0.9


def test_label_only_fakes_get_no_mask_loss():
    batch = _batch([1, 1, 0], [True, False, True])
    out = _output(3)
    terms = PaperLoss()(out, batch)
    terms.total.backward()
    # The label-only fake's mask logits receive no gradient at all; its image logit does.
    assert out.mask_logit.grad[1].abs().sum() == 0
    assert out.mask_logit.grad[0].abs().sum() > 0
    assert out.image_logit.grad[1].abs().sum() > 0
    per = sample_losses(out, batch)
    torch.testing.assert_close(terms.seg, (per.seg[0] + per.seg[2]) / 2)
    torch.testing.assert_close(terms.clf, per.bce.mean())
    torch.testing.assert_close(terms.total, 0.04 * terms.clf + 0.16 * terms.seg)
    assert terms.edge is None


def test_batch_of_only_label_only_fakes_is_pure_bce():
    batch = _batch([1, 1], [False, False])
    terms = PaperLoss(lambda_clf=0.5, lambda_seg=2.0)(_output(2), batch)
    assert terms.seg.item() == 0.0
    torch.testing.assert_close(terms.total, 0.5 * terms.clf)


def test_edge_term_for_mvssnet_outputs():
    batch = _batch([1, 0], [True, True], size=16)
    terms = PaperLoss()(_output(2, size=16, edge=True), batch)
    assert terms.edge is not None and 0 < terms.edge.item() < 1
    torch.testing.assert_close(terms.total, 0.04 * terms.clf + 0.16 * terms.seg + 0.8 * terms.edge)


def test_split_batch_with_global_normalisers_sums_to_the_full_batch_loss():
    batch = _batch([1, 1, 0, 1, 0, 1], [True, False, True, True, True, False])
    out = _output(6)
    loss = PaperLoss()
    full = loss(out, batch).total
    n_masks = int(batch["has_mask"].sum())
    parts = 0
    for sl in (slice(0, 2), slice(2, 6)):
        part_out = ModelOutput(out.image_logit[sl], out.mask_logit[sl])
        part = {k: v[sl] for k, v in batch.items()}
        parts = parts + loss(part_out, part, n_images=6, n_masks=n_masks).total
    torch.testing.assert_close(parts, full)
