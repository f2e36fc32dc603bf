"""`build_dataset(name, data_dir, **options)`: any supported set as a DatasetDict."""

from __future__ import annotations

import importlib
import inspect

from .builders.common import assemble
from .errors import InvalidInputError
from .schema import data_folder_name

# name -> (module under hf_datasets.builders, function)
BUILDERS = {
    "sample": ("sample", "build"),
    "nih": ("nih", "build"),
    "chexpert": ("chexpert", "build"),
    "mimic_cxr_jpg": ("mimic", "build"),
    "padchest": ("padchest", "build"),
    "vindr_cxr": ("vindr", "build"),
    "rsna_pneumonia": ("rsna", "build"),
    "covidx": ("covidx", "build"),
    "kermany": ("kermany", "build"),
    "montgomery": ("lung_masks", "build_montgomery"),
    "shenzhen": ("lung_masks", "build_shenzhen"),
    "jsrt": ("lung_masks", "build_jsrt"),
    "imagefolder": ("generic", "build_imagefolder"),
    "manifest": ("generic", "build_manifest"),
    "dicomdir": ("generic", "build_dicomdir"),
    "cxr_folder": ("cxr_folder", "build"),
    "cxr_pool": ("cxr_pool", "build"),
}


# Builders of generic layouts: their data are named by their folder (cards know the benchmark subsets by it).
FOLDER_LAYOUTS = ("cxr_folder", "imagefolder", "manifest", "dicomdir")
# Builders of a site's own files: the identifiers and file paths in their rows are those the site's folders, file
# names and tables give (DICOM identifiers aside, which are hashed), not a public set's de-identified ones.
SITE_LAYOUTS = frozenset({*FOLDER_LAYOUTS, "cxr_pool"})


def available_datasets() -> list[str]:
    """Names accepted by `build_dataset`."""
    return sorted(BUILDERS)


def build_recipe(name: str, data_dir=None, seed: int = 0, **options):
    """Run the named builder: the Recipe (records + label names + attribution) of a data set."""
    if name not in BUILDERS:
        raise InvalidInputError(f"unknown data set {name!r}; available: {available_datasets()}")
    if data_dir is None and name != "sample":
        raise InvalidInputError(f"build_dataset({name!r}) needs data_dir (--data_dir: the set's original folder)")
    module_name, function = BUILDERS[name]
    module = importlib.import_module(f"hf_datasets.builders.{module_name}")
    builder = getattr(module, function)
    accepted = [p for p in inspect.signature(builder).parameters if p != "data_dir"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        skipping = ("; on_error is not one either: `hf_datasets.prepare` always goes on past an unreadable file, "
                    "listing it with its reason in report.json" if "on_error" in unknown else "")
        raise InvalidInputError(f"{name} has no option {', '.join(map(repr, unknown))}; its options: {accepted} "
                                "(split_fractions and train_fraction are not builder options: see build_dataset, "
                                f"prepare's --split_fractions and training's --dataset_options{skipping})")
    if "seed" in accepted:
        options["seed"] = seed
    return builder(data_dir, **options)


def build_dataset(name: str, data_dir=None, *, seed: int = 0, split_fractions: dict | None = None,
                  streaming: bool = False, num_proc: int | None = None, cache_dir=None,
                  on_error: str = "raise", train_fraction: float | None = None, subset_seed: int = 0,
                  **options):
    """Build a data set from its original layout.

    Args:
        name: one of `available_datasets()`.
        data_dir: the set's root folder as distributed (ignored for "sample").
        seed, split_fractions: seeded patient-level split used where no official split exists
            (default train 0.8 / validation 0.1 / test 0.1).
        streaming: return an IterableDatasetDict that decodes originals on the fly, writing
            nothing to the datasets cache.
        num_proc: worker processes for decoding (DICOM / raw sets).
        on_error: "raise" on a missing or unreadable image file, or "skip" it with a warning.
        train_fraction, subset_seed: keep only this share of the training patients (seeded, nested
            across fractions: the 10% subset lies inside the 25% one); other splits are unchanged.
        options: builder options (label policies, classes, filters; see each builder).
    Returns:
        datasets.DatasetDict with the common schema (see `hf_datasets.schema`).
    """
    recipe = build_recipe(name, data_dir, seed=seed, **options)
    return assemble(recipe, fractions=split_fractions, seed=seed, streaming=streaming,
                    num_proc=num_proc, cache_dir=cache_dir, on_error=on_error,
                    train_fraction=train_fraction, subset_seed=subset_seed, folder=data_folder_name(data_dir),
                    options=options)
