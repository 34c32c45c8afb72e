"""Data sets of the study: manifests, preparers, downloads, validation, the Dataset, synthetic data.

Names are imported lazily so that `import sdfl_lib.data` stays cheap.
"""

from __future__ import annotations

from sdfl_lib.lazy import lazy_getattr

_EXPORTS = {
    "MANIFEST_COLUMNS": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "read_authors_list": "manifest",
    "write_authors_list": "manifest",
    "replace_prefix": "manifest",
    "load_image": "io",
    "load_mask": "io",
    "ImageReadError": "io",
    "mask_to_edge": "edges",
    "prepare": "prepare",
    "PREPARERS": "prepare",
    "split_manifest": "split",
    "build_paper_lists": "split",
    "validate_manifest": "validate",
    "download": "download",
    "DATASETS": "registry",
    "synthesize": "synth",
    "ManipulationDataset": "dataset",
    "decode_image": "dataset",
    "balanced_sampler": "dataset",
    "worker_init": "dataset",
}

__all__ = sorted(_EXPORTS)

# These two functions share their module's name: bound eagerly, so that a later
# `import sdfl_lib.data.prepare` cannot shadow the function with the module.
from sdfl_lib.data.download import download as download  # noqa: E402
from sdfl_lib.data.prepare import prepare as prepare  # noqa: E402

__getattr__ = lazy_getattr(__name__, _EXPORTS)
