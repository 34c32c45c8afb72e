"""The data sets of the study, one entry each: where its files come from, how its folder
becomes a manifest, whether it is a shallow- or a deepfake set, and where its sample lies.

`DATASETS` maps a name (as `sdfl data download NAME` and `sdfl data prepare NAME` take it) to a
`DatasetInfo`: its files (`RemoteFile`: Google Drive, Dropbox or HTTP(S) address, or the steps to
fetch it by hand), home page, citation and notes, which `sdfl_lib.data.download` fetches; its
preparer (`sdfl_lib.data.prepare`); its kind, "shallow" or "deep", and the source names its rows
carry, from which evaluation's `DEEP_SOURCES` rule is made; whether its fakes are label-only;
its sample's folder under the shared data (`sdfl_lib.study.smoke`). The other places read it
here: a new data set is one entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it comes from and where it goes.

    `url` is a Google Drive, Dropbox or HTTP(S) address, or None when the file must be fetched
    by hand (then `manual` says how). Archives are extracted into `to/subdir`. `unpacked` is a
    glob (relative to `to`) that finds the content when a user unpacked it there by hand.
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    subdir: str = ""
    manual: str = ""
    unpacked: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """A data set of the study: its files, home page, citation and notes for the user; its
    preparer ("module:function" under `sdfl_lib.data.preparers`, "" for none), kind ("shallow" or
    "deep"), a regular expression of the source names of its rows (or of the authors' lists of
    it) that mark them as its kind, whether its fakes are label-only (no masks), and its sample's
    folder under the shared data ("" for none)."""

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    homepage: str
    citation: str
    notes: str = ""
    test_only: bool = False
    extra: dict = field(default_factory=dict)
    preparer: str = ""
    kind: str = "shallow"
    sources: str = ""
    label_only: bool = False
    sample: str = ""


_PHAM = "N. T. Pham et al., Hybrid Image-Retrieval Method for Image-Splicing Validation, Symmetry 2019"

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "casia2",
            "CASIA v2.0 (revised names) with the Pham et al. ground truth",
            (
                RemoteFile(
                    "CASIA2.0_revised.zip",
                    "https://drive.google.com/uc?id=1IDUgcoUeonBxx2rASX-_QwV9fhbtqdY8",
                ),
                RemoteFile(
                    "CASIA2.0_Groundtruth.zip",
                    "https://github.com/namtpham/casia2groundtruth/raw/master/CASIA2.0_Groundtruth.zip",
                ),
            ),
            "https://github.com/namtpham/casia2groundtruth",
            "J. Dong, W. Wang, T. Tan, CASIA Image Tampering Detection Evaluation Database, "
            f"ChinaSIP 2013. Ground truth: {_PHAM}.",
            "Images (Au/, Tp/) from the Google Drive copy linked in the ground-truth repository; "
            "masks from that repository.",
            preparer="shallowfakes:prepare_casia2",
            sample="casia2-sample",
        ),
        DatasetInfo(
            "casia1",
            "CASIA v1.0 with the Pham et al. ground truth",
            (
                RemoteFile(
                    "CASIA1.zip",
                    manual="the CASIA v1.0 images (Au/ and Sp/, about 91 MB) from the Google Drive "
                    "or OneDrive copy linked in https://github.com/namtpham/casia1groundtruth "
                    "(README); pass its direct link with --url, or save the archive as CASIA1.zip",
                    unpacked="**/Au/Au_*",
                ),
                RemoteFile(
                    "CASIA 1.0 groundtruth.zip",
                    "https://github.com/namtpham/casia1groundtruth/raw/master/"
                    "CASIA%201.0%20groundtruth.zip",
                ),
            ),
            "https://github.com/namtpham/casia1groundtruth",
            f"J. Dong, W. Wang, T. Tan, ChinaSIP 2013. Ground truth: {_PHAM}.",
            "The masks are named after the revised file names: `sdfl data prepare casia1` matches "
            "them on exact names, then on the source/target ids and trailing number.",
            test_only=True,
            preparer="shallowfakes:prepare_casia1",
            sample="casia1-sample",
        ),
        DatasetInfo(
            "columbia",
            "Columbia Uncompressed Image Splicing Detection (4cam_auth, 4cam_splc)",
            (
                RemoteFile(
                    "4cam_auth.tar.bz2",
                    "https://www.dropbox.com/sh/786qv3yhvc7s9ki/AABaQvI-lPiM3Zl64RQoDCiMa/"
                    "4cam_auth.tar.bz2?dl=1",
                ),
                RemoteFile(
                    "4cam_splc.tar.bz2",
                    "https://www.dropbox.com/sh/786qv3yhvc7s9ki/AAAESATxO7wncDMKkl1XjyNaa/"
                    "4cam_splc.tar.bz2?dl=1",
                ),
            ),
            "https://www.ee.columbia.edu/ln/dvmm/downloads/authsplcuncmp/",
            "Y.-F. Hsu, S.-F. Chang, Detecting Image Splicing Using Geometry Invariants and "
            "Camera Characteristics Consistency, ICME 2006.",
            "The ground truth is the spliced region (derived from the colour-coded edgemask "
            "images by `sdfl data prepare columbia`), not the edge mask.",
            test_only=True,
            preparer="shallowfakes:prepare_columbia",
        ),
        DatasetInfo(
            "columbia-imsplice",
            "Columbia Image Splicing Detection Evaluation Dataset (ImSpliceDataset.rar)",
            (
                RemoteFile(
                    "ImSpliceDataset.rar",
                    "https://www.dropbox.com/s/bo10et4p1zg08aj/ImSpliceDataset.rar?dl=1",
                ),
            ),
            "https://www.ee.columbia.edu/ln/dvmm/downloads/AuthSplicedDataSet/",
            "T.-T. Ng, S.-F. Chang, Q. Sun, A Data Set of Authentic and Spliced Image Blocks, "
            "Columbia ADVENT Technical Report 203-2004-3, 2004.",
            "128x128 grey blocks with image-level labels only. Extracting the .rar needs an "
            "unRAR tool (unar, 7zip, unrar or bsdtar).",
            test_only=True,
            label_only=True,
        ),
        DatasetInfo(
            "coverage",
            "COVERAGE copy-move forgery database",
            (
                RemoteFile(
                    "COVERAGE.zip",
                    manual="the repository https://github.com/wenbihan/coverage (its image/ and "
                    "mask/ folders; 'Code > Download ZIP' gives coverage-master.zip: save it as "
                    "COVERAGE.zip, or unpack it there yourself)",
                    unpacked="**/mask/*forged.tif",
                ),
            ),
            "https://github.com/wenbihan/coverage",
            "B. Wen et al., COVERAGE - a novel database for copy-move forgery detection, ICIP 2016.",
            "Non-commercial research use. 9 of the 100 pairs have masks of another size than "
            "their image.",
            test_only=True,
            preparer="shallowfakes:prepare_coverage",
            sample="coverage-sample",
        ),
        DatasetInfo(
            "nist16",
            "NIST Nimble 2016 (NC2016) manipulation data set",
            (
                RemoteFile(
                    "NC2016_Test0613.zip",
                    manual="NC2016_Test0613 after registering for the NIST Open Media Forensics "
                    "Challenge data (https://mfc.nist.gov/ , data license agreement)",
                    unpacked="**/NC2016-manipulation-ref.csv",
                ),
            ),
            "https://www.nist.gov/itl/iad/mig/open-media-forensics-challenge",
            "NIST Nimble Challenge 2016 data set, https://www.nist.gov/itl/iad/mig/nimble-challenge",
            "Test only in the study.",
            test_only=True,
            preparer="shallowfakes:prepare_nist16",
        ),
        DatasetInfo(
            "icnc-deepfakes",
            "The authors' FaceForensics++ frames (ICNC 2023)",
            (
                RemoteFile(
                    "ICNC2023-Deepfakes.tar.xz",
                    "https://www.dropbox.com/s/o5410tl5v4vxsth/ICNC2023-Deepfakes.tar.xz?dl=1",
                ),
            ),
            "https://www.dropbox.com/s/o5410tl5v4vxsth/ICNC2023-Deepfakes.tar.xz?dl=0",
            "Zhang, Tohidypour, Wang, Nasiopoulos, Shallow- and Deep-fake Image Manipulation "
            "Localization Using Deep Learning, ICNC 2023; frames from FaceForensics++ "
            "(Rossler et al., ICCV 2019).",
            "Layout {image,mask,edge}/<Method>/<Method>_<target>_<source>_<frame>.png; real "
            "frames youtube_* / actors_*. FaceForensics++ terms of use apply.",
            preparer="deepfakes:prepare_icnc_deepfakes",
            kind="deep",
            # Its rows are ffpp-* (below); the authors' lists name the method folders and the
            # real frames' youtube_* / actors_* files.
            sources=r"deepfake|youtube|actors",
        ),
        DatasetInfo(
            "ffpp",
            "FaceForensics++ videos (c23)",
            (
                RemoteFile(
                    "original_sequences/",
                    unpacked="**/original_sequences",
                    manual="the videos with the official download script, which the "
                    "FaceForensics++ authors send after their request form "
                    "(https://github.com/ondyari/FaceForensics#access): original_sequences/ and "
                    "manipulated_sequences/ (Deepfakes, Face2Face, FaceSwap, NeuralTextures, "
                    "with their masks/ videos when you have them), c23",
                ),
            ),
            "https://github.com/ondyari/FaceForensics",
            "A. Rossler et al., FaceForensics++: Learning to Detect Manipulated Facial Images, "
            "ICCV 2019.",
            "`sdfl data prepare ffpp` extracts the frames itself (7 per real, 2 per fake video).",
            preparer="ffpp:prepare_ffpp",
            kind="deep",
            sources=r"faceforensics|ff\+\+|ffpp|face2face|faceswap|neuraltextures",
            sample="faceforensics-sample",
        ),
        DatasetInfo(
            "cifake",
            "CIFAKE: real (CIFAR-10) and Stable-Diffusion images",
            (
                RemoteFile(
                    "cifake.zip",
                    manual="the Kaggle data set birdy654/cifake-real-and-ai-generated-synthetic-"
                    "images (needs a Kaggle account: `kaggle datasets download -d birdy654/"
                    "cifake-real-and-ai-generated-synthetic-images`), saved as cifake.zip",
                    unpacked="**/FAKE",
                ),
            ),
            "https://www.kaggle.com/datasets/birdy654/cifake-real-and-ai-generated-synthetic-images",
            "J. J. Bird, A. Lotfi, CIFAKE: Image Classification and Explainable Identification of "
            "AI-Generated Synthetic Images, IEEE Access 2024.",
            "32x32, image labels only (no masks): fakes are label-only samples.",
            preparer="deepfakes:prepare_cifake",
            kind="deep",
            sources="cifake",
            label_only=True,
        ),
    )
}


# Deepfake sources that are no entry above: the synthetic faces of `sdfl data synth`, and
# deepfake sets without a preparer here, so that their manifests count as deepfakes too.
OTHER_DEEP_SOURCES = r"synth-face|celeb-?df|dfdc"

# A source name (case-insensitive) matching this marks a deepfake row (see
# `sdfl_lib.evaluate.subsets`): the deep entries' source patterns and the others above.
DEEP_SOURCES = "|".join(
    [d.sources for d in DATASETS.values() if d.kind == "deep" and d.sources] + [OTHER_DEEP_SOURCES]
)


def prepare_names() -> list[str]:
    """The data sets `sdfl data prepare` knows, in the registry's order."""
    return [d.name for d in DATASETS.values() if d.preparer]


def load_preparer(name: str) -> Callable[..., list[dict[str, Any]]]:
    """The preparer function of data set `name` (its module imported now)."""
    module, _, function = DATASETS[name].preparer.partition(":")
    return getattr(importlib.import_module(f"sdfl_lib.data.preparers.{module}"), function)


def sample_roots() -> dict[str, str]:
    """Data set -> its sample's folder under the shared data, for the sets that have one."""
    return {d.name: d.sample for d in DATASETS.values() if d.sample}
