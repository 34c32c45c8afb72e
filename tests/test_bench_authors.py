"""The benchmark's independent build of the authors' network computes what the original does."""

from __future__ import annotations

import numpy as np
import torch

from sdfl_lib.bench.authors import AuthorsOurs, load_authors_state_dict


def test_authors_harness_reproduces_original_outputs(shared, synth_weights):
    model = AuthorsOurs().eval()
    load_authors_state_dict(
        model, synth_weights.synth_state_dict(synth_weights.load_manifest("ours"))
    )
    ref = np.load(shared / "reference" / "outputs_ours.npz")
    with torch.no_grad():
        image_logit, mask_logit = model(synth_weights.reference_input())
    assert np.abs(image_logit.numpy() - ref["first"]).max() <= 1e-4
    assert np.abs(mask_logit.numpy() - ref["second"]).max() <= 1e-4
