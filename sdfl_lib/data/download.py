"""Downloads the study's data sets: `download(name, to)` fetches, verifies and extracts one.

`DATASETS` describes every data set of the study: where each file comes from (Google Drive via
gdown, Dropbox, plain HTTP(S)) or, for sets behind a registration or request form, what to fetch
by hand and where to put it. A download resumes from `<file>.part` (HTTP Range), is checked
against a SHA-256 when one is known or given, and archives (.zip, .tar.*, .rar) are extracted
safely (see `sdfl_lib.data.download_archive`). Files already in the target folder (put there by hand)
are used as they are: verified and extracted, never fetched again.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sdfl_lib.data.download_archive import ArchiveError, extract_archive, is_archive

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched or verified; the message says what to do by hand."""


class ManualDownloadRequired(DownloadError):
    """The data set (or one of its files) can only be fetched by hand."""


class ChecksumError(DownloadError):
    """The file's SHA-256 differs from the expected one."""


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
    """A data set of the study: its files, home page, citation and notes for the user."""

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    homepage: str
    citation: str
    notes: str = ""
    test_only: bool = False
    extra: dict = field(default_factory=dict)


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
        ),
    )
}


def _unknown(name: str) -> DownloadError:
    close = difflib.get_close_matches(name, DATASETS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return DownloadError(f"unknown data set {name!r}.{hint} Known: {', '.join(DATASETS)}.")


def sha256sum(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex (with a progress bar for big files)."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with (
        open(path, "rb") as handle,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {Path(path).name}",
             disable=size < (256 << 20)) as bar,
    ):
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _verify(path: Path, expected: str | None) -> str:
    actual = sha256sum(path)
    # The digest is kept beside the file so a user can pin it in DATASETS or with --sha256.
    Path(f"{path}.sha256").write_text(f"{actual}  {path.name}\n")
    if expected and actual.lower() != expected.lower():
        bad = path.with_name(path.name + ".sha256-mismatch")
        os.replace(path, bad)
        raise ChecksumError(
            f"SHA-256 mismatch for {path.name}: expected {expected.lower()}, got {actual}. "
            f"The file was moved to {bad} (delete it to download again)."
        )
    return actual


def _drive_id(url: str) -> str | None:
    match = re.search(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:.*&)?id=)([\w-]+)", url)
    return match.group(1) if match else None


def _dropbox_direct(url: str) -> str:
    """Dropbox share links serve a web page unless asked for the file with dl=1."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "dl"] + [("dl", "1")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _http_get(url: str, dest: Path, timeout: float) -> None:
    """Fetches `url` into `dest`, resuming `dest.part` with an HTTP Range request."""
    import requests
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as response:
        if response.status_code == 416 and have:
            # The partial file may already hold everything: the server says how big it is.
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                os.replace(part, dest)
                return
            part.unlink()
            return _http_get(url, dest, timeout)
        response.raise_for_status()
        resumed = have and response.status_code == 206
        if have and not resumed:
            have = 0  # the server ignored the Range request: start again
        length = response.headers.get("Content-Length")
        total = int(length) + have if length and length.isdigit() else None
        with (
            open(part, "ab" if resumed else "wb") as handle,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name) as bar,
        ):
            for chunk in response.iter_content(CHUNK):
                handle.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume from {part}"
        )
    os.replace(part, dest)


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Fetches one URL (Google Drive, Dropbox, HTTP(S) or file://) into `dest`."""
    drive = _drive_id(url)
    if drive:
        import gdown

        # gdown keeps its own resumable partial file beside `dest`.
        result = gdown.download(id=drive, output=str(dest), quiet=False, resume=True,
                               timeout=timeout)
        if not result or not dest.is_file():
            raise DownloadError(f"Google Drive refused {url} (quota or permission)")
        return
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), dest)
        return
    if scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL {url!r}: use http(s)://, file:// or a Drive link")
    if "dropbox.com" in urllib.parse.urlsplit(url).netloc:
        url = _dropbox_direct(url)
    _http_get(url, dest, timeout)


def _manual_message(info: DatasetInfo, item: RemoteFile, to: Path, why: str = "") -> str:
    if why:
        get = f"download {item.url} by hand" + (f" (home page {info.homepage})" if info.homepage else "")
    else:
        get = f"it must be downloaded by hand: get {item.manual}"
    return (
        f"{why}{info.name} ({info.title}): {get}. Put {item.filename!r} in {to}: an archive is "
        f"verified and extracted by `sdfl data download {info.name} --to {to}`, a folder you "
        f"unpacked yourself is used as it is; then run `sdfl data prepare {info.name} --root "
        f"{to}`. Cite: {info.citation}"
    )


def _select_override(info: DatasetInfo, url: str | None, sha256: str | None) -> list[RemoteFile]:
    """Applies a user's --url/--sha256 to the data set's only file, or its only manual file."""
    files = list(info.files)
    if url is None and sha256 is None:
        return files
    targets = [i for i, f in enumerate(files) if f.url is None] if url else []
    if len(files) == 1:
        targets = [0]
    if len(targets) != 1:
        raise DownloadError(
            f"{info.name} has {len(files)} files ({', '.join(f.filename for f in files)}): "
            "--url/--sha256 can only replace a single file; download the others by hand"
        )
    i = targets[0]
    files[i] = RemoteFile(
        files[i].filename, url or files[i].url, sha256 or files[i].sha256, files[i].subdir,
        files[i].manual, files[i].unpacked,
    )
    return files


def _done_marker(to: Path, item: RemoteFile) -> Path:
    return to / f".sdfl-extracted-{item.filename}"


def download(
    name: str,
    to: str | os.PathLike,
    url: str | None = None,
    sha256: str | None = None,
    extract: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetches, verifies and extracts data set `name` into folder `to`; returns `to`.

    `url`/`sha256` replace those of the data set's only file (or its only hand-fetched file).
    Raises `ManualDownloadRequired` for sets behind a form, `DownloadError` when offline.
    """
    if name not in DATASETS:
        raise _unknown(name)
    info = DATASETS[name]
    to = Path(to).expanduser().absolute()
    to.mkdir(parents=True, exist_ok=True)
    for item in _select_override(info, url, sha256):
        dest = to / item.filename
        if _done_marker(to, item).exists():
            print(f"{item.filename}: already extracted in {to}")
            continue
        if not dest.exists() and item.unpacked and next(iter(to.glob(item.unpacked)), None):
            print(f"{item.filename}: found its content in {to} (unpacked by hand)")
            continue
        if not dest.exists():
            if item.url is None:
                raise ManualDownloadRequired(_manual_message(info, item, to))
            try:
                _fetch(item.url, dest, timeout)
            except DownloadError as err:
                raise DownloadError(_manual_message(info, item, to, f"{err}. ")) from err
            except Exception as err:  # network errors of requests/gdown, refused connections
                why = f"could not fetch {item.url} ({type(err).__name__}: {err}); offline? "
                raise DownloadError(_manual_message(info, item, to, why)) from err
        if dest.is_dir():
            continue  # a folder the user unpacked by hand
        digest = _verify(dest, item.sha256)
        if extract and is_archive(dest):
            try:
                extract_archive(dest, to / item.subdir)
            except ArchiveError as err:
                raise DownloadError(f"{dest}: {err}") from err
            _done_marker(to, item).write_text(digest + "\n")
    return to
