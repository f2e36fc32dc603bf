"""The embedded sample set: 16 real Kermany pediatric CXRs and one real adult chest CR.

Files come from installed PyPI packages (never downloaded here), are checked by sha256 and
copied into the user cache dir ($CXRGM_CACHE, else $XDG_CACHE_HOME/cxrgm, else ~/.cache/cxrgm); once there,
the packages are not needed any more.
Splits: train 12 / test 4 Kermany images (patient-disjoint, both classes in each) and
"unlabelled" with the CR, whose pneumonia status is unknown (labels NaN).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

from ..errors import LayoutError
from ..shards import partial_path, remove_stale_partials
from .common import Recipe, record
from .kermany import KERMANY_CITATION, kermany_patient

KERMANY_PACKAGE = "pneumonia_model_package"
KERMANY_SUBDIR = ("datasets", "pneumonia-data", "val")
KERMANY_SHA256 = {
    "NORMAL2-IM-1427-0001.jpeg": "95fe6dd24fc010ee526e40457ff34ef057d257c71b22ac9fd312094d4d7b2a37",
    "NORMAL2-IM-1430-0001.jpeg": "ba2d0ff79c2758dc75331c3242dfc05b0108df3affc5402b55b6d9b81f44c2a0",
    "NORMAL2-IM-1431-0001.jpeg": "1eab167cd836a153ddeb61a0e59ff21b276fb79b0aab70491605a77ffc52f4ac",
    "NORMAL2-IM-1436-0001.jpeg": "1b96b8ba4d279362a396c2864f76eb3f30ba910f63573491ed2203b4e728f5c7",
    "NORMAL2-IM-1437-0001.jpeg": "a73c06abbb473b57c90374424f86f0d7876bdbdb5c3ed8c681e4bd6f09778c38",
    "NORMAL2-IM-1438-0001.jpeg": "19deafbd4cb13b7bca7e9c83466066c0d0c9e1678861519dcb1d0a45a79b0362",
    "NORMAL2-IM-1440-0001.jpeg": "91c3cb7e4c579b7f9d7f48780575caacfbc51898841cdc0d0d1a388bbba47203",
    "NORMAL2-IM-1442-0001.jpeg": "d30b85c96b78dabe1ddf05867a687dffe7a9a067cd72485abace2fc959c2a503",
    "person1946_bacteria_4874.jpeg": "8bbf92ad61e43b7ff8c12eff396594cfbc631e4a1daff80deba3d929f6199cb0",
    "person1946_bacteria_4875.jpeg": "905a703da2ca12326f2d88ce9b9823290bad97e98c8179e77393c56f86978caa",
    "person1947_bacteria_4876.jpeg": "a10dda144959f77c7589b2c874da00d9649e34ee96660b87ef8d720083524154",
    "person1949_bacteria_4880.jpeg": "5bde846e4a137b37e568c66a61752b4c5cfe2057b0f4af6bfd3cfab3db1202b8",
    "person1950_bacteria_4881.jpeg": "e1d5161b6a6d82ccbee47fd8dfb1a6d44eded1d7e4f164121dd2a229bdc43f5d",
    "person1951_bacteria_4882.jpeg": "1136fa7a74528c4b6dd55b7318dedefdbc7b523db09928b1ebdf276fef31f08b",
    "person1952_bacteria_4883.jpeg": "3fef55b2ba3c51c66ad41122ed4f640c19bb549d850d53fbbe3a4f18d9eb4e82",
    "person1954_bacteria_4886.jpeg": "9904f0fec6adc349c35452fa9909721b9dfcb02a254c76b9d329f3432151ed39",
}
TEST_PATIENTS = ("NORMAL2-IM-1427", "NORMAL2-IM-1430", "person1947", "person1949")
CR_NAME = "RG1_UNCR.dcm"
CR_SHA256 = "946f28f48b9fbf360196a9b835c8fce83b0c654bf85a5107663c8a61df02e498"
INSTALL_HINT = ('pip install --no-deps "pneumonia-model-package==0.3.0" and '
                'pip install "pydicom-data==1.0.0"')
ABOUT = ("cxrgm sample: 16 pediatric CXRs (8 normal, 8 bacterial pneumonia) from the Kermany "
         "set, shipped in the PyPI wheel pneumonia-model-package 0.3.0, and one adult PA chest "
         "CR (RG1_UNCR.dcm, MONOCHROME1, 15 bits) from the PyPI package pydicom-data 1.0.0 "
         "(pydicom test data, MIT licence), whose pneumonia labels are unknown (NaN).")


def cache_dir() -> Path:
    """User cache directory of the package."""
    if os.environ.get("CXRGM_CACHE"):
        return Path(os.environ["CXRGM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cxrgm"


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _kermany_source() -> Path:
    spec = importlib.util.find_spec(KERMANY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LayoutError(KERMANY_PACKAGE, f"package not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*KERMANY_SUBDIR)


def _cr_source() -> Path:
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(CR_NAME, download=False)
    except Exception as err:  # pydicom raises several types when the data package is absent
        raise LayoutError(CR_NAME, f"not available offline: {INSTALL_HINT}") from err
    if path is None:
        raise LayoutError(CR_NAME, f"not available offline: {INSTALL_HINT}")
    return Path(path)


def _is_verified(path: Path, sha256: str) -> bool:
    try:
        return _sha256(path) == sha256
    except FileNotFoundError:
        return False


def _copy_verified(source: Path, target: Path, sha256: str) -> None:
    """Copy `source`, checked against `sha256`, to `target`. Several processes may fill the cache at once (the ranks
    of `accelerate launch`, test workers): each copies to a temporary file of its own beside `target` and renames it
    whole into place, so `target` is always one writer's whole verified copy. A copy another writer put there first
    is kept when it cannot be replaced (a file in use, on some platforms)."""
    if not source.exists():
        raise LayoutError(source, f"sample file missing: {INSTALL_HINT}")
    if _sha256(source) != sha256:
        raise LayoutError(source, "sha256 mismatch: the installed package is not the expected version")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    except OSError:
        partial.unlink(missing_ok=True)
        if not _is_verified(target, sha256):
            raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def sample_files() -> dict[str, Path]:
    """Verified cached copies: file name -> path (16 JPEGs and the CR).

    The packages are read only for copies that are missing or altered, so a filled cache (e.g. copied to an
    offline machine and named by $CXRGM_CACHE) is enough on its own. Temporary copies that writers which are gone
    (killed) left behind are removed.
    """
    root = cache_dir() / "sample"
    files = {name: root / "kermany" / name for name in KERMANY_SHA256} | {CR_NAME: root / "cr" / CR_NAME}
    digests = KERMANY_SHA256 | {CR_NAME: CR_SHA256}
    stale = [name for name, path in files.items() if not (path.exists() and _sha256(path) == digests[name])]
    for name in stale:
        _copy_verified(_cr_source() if name == CR_NAME else _kermany_source() / name, files[name], digests[name])
    copies = re.compile("|".join(re.escape(name) for name in files))
    for folder in {path.parent for path in files.values()}:  # temporary copies of writers that were killed
        remove_stale_partials(folder, copies)
    return files


def build(data_dir=None) -> Recipe:
    """Recipe of the sample set; `data_dir` is ignored (files come from installed packages)."""
    files = sample_files()
    root = str(cache_dir() / "sample")
    records = []
    for name in KERMANY_SHA256:
        patient = kermany_patient(name)
        labels = (0.0, 1.0) if "bacteria" in name else (1.0, 0.0)
        records.append(record(files[name], data_dir=root, labels=labels, patient_id=f"kermany_{patient}",
                              source="kermany", view="AP",
                              split="test" if patient in TEST_PATIENTS else "train"))
    records.append(record(files[CR_NAME], data_dir=root, labels=(float("nan"),) * 2, decode=True,
                          patient_id="pydicom_data_RG1", source="pydicom_data", view="PA",
                          split="unlabelled"))
    return Recipe(name="sample", records=records, label_names=["normal", "pneumonia"], bits=8,
                  about=ABOUT, citation=KERMANY_CITATION,
                  license="Kermany images: CC BY 4.0; RG1_UNCR.dcm: MIT (pydicom-data)",
                  homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2", data_dir=root)
