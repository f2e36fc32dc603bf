"""`write_dataset_card(dataset_dir, sources)`: README.md of a prepared data set, naming each source and its licence."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from .model_card import LICENCE_FILE, write_licence_file
from .privacy import find_local_paths, scrub
from .sources import code, describe, lookup

TEMPLATE = Path(__file__).parent / "dataset_card_template.md"
SPDX = {"CC BY 4.0": "cc-by-4.0", "CC BY 3.0": "cc-by-3.0"}
# First line of the LICENCE_FILE beside the card of a set whose sources have different or unlisted licences
# (`license: other`, linked from its `license_link`): each source's terms, ours to rewrite or remove with the card
LICENCE_FILE_HEADER = "<!-- Written by cxrgm's dataset card from the data set's sources. -->"


def saved_splits_and_labels(dataset_dir: Path) -> tuple[dict[str, int], list[str]]:
    """Rows per split and label names (the order of `labels`) of a `DatasetDict.save_to_disk` folder, read from its
    metadata (memory-mapped, nothing decoded); empty when it is none or names no labels."""
    if not (dataset_dir / "dataset_dict.json").is_file():
        return {}, []
    from datasets import load_from_disk

    saved = load_from_disk(str(dataset_dir))
    try:
        about = json.loads(next(iter(saved.values())).info.description or "{}") if saved else {}
    except json.JSONDecodeError:
        about = {}
    labels = about.get("label_names", []) if isinstance(about, dict) else []
    return {name: split.num_rows for name, split in saved.items()}, [str(label) for label in labels]


def prepare_settings(dataset_dir: Path) -> dict:
    """A prepared set's prepare_settings.json, or {} where there is none (a `save_to_disk` folder) or it is damaged."""
    try:
        settings = json.loads((Path(dataset_dir) / "prepare_settings.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def prepared_with(dataset_dir: Path) -> str | None:
    """The builder a prepared set was made with (its prepare_settings.json's `dataset`), or None where that is not
    recorded (a `save_to_disk` folder, a damaged settings file)."""
    builder = prepare_settings(dataset_dir).get("dataset")
    return builder if isinstance(builder, str) else None


def recorded_sources(settings: dict, dataset_dir: Path | None = None) -> list[str]:
    """The sources a prepared set's settings name: a `cxr_pool`'s pooled folders where its `folders` option is
    recorded, else those the paths of its images in `dataset_dir` give (`<folder>/<file>`), a folder layout's data
    folder (`FOLDER_LAYOUTS`, e.g. kermany_pediatric for cxr_folder) where that is recorded, else the builder; []
    where no builder is recorded."""
    from hf_datasets.builders.common import option_values
    from hf_datasets.registry import FOLDER_LAYOUTS

    builder, options = settings.get("dataset"), settings.get("options")
    if not isinstance(builder, str) or not builder:
        return []
    folders = option_values(options.get("folders")) if isinstance(options, dict) else None
    if builder == "cxr_pool" and folders and all(isinstance(name, str) and name for name in folders):
        return folders
    if builder == "cxr_pool" and dataset_dir is not None and (pooled := _pooled_folders(dataset_dir)):
        return pooled
    folder = settings.get("folder")
    if builder in FOLDER_LAYOUTS and isinstance(folder, str) and folder:
        return [folder]
    return [builder]


def _pooled_folders(dataset_dir: Path) -> list[str]:
    """The folders a prepared `cxr_pool` set holds images of, read from its splits' `path` column (no image
    decoded); [] where they cannot be told (no `save_to_disk` folder, no paths, a path outside any folder)."""
    from hf_datasets.builders.cxr_pool import pooled_folders

    if not (dataset_dir / "dataset_dict.json").is_file():
        return []
    from datasets import load_from_disk

    found = {}
    for split in load_from_disk(str(dataset_dir)).values():
        counts = pooled_folders(split.select_columns(["path"])["path"]) if "path" in split.column_names else None
        if counts is None:
            return []
        found.update(counts)
    return list(found)


def holds_site_identifiers(dataset_dir: Path) -> bool:
    """Whether a set's identifiers and paths may be a site's own (`SITE_LAYOUTS`), or cannot be told apart from
    them (how it was built is not recorded)."""
    from hf_datasets.registry import SITE_LAYOUTS

    builder = prepared_with(dataset_dir)
    return builder is None or builder in SITE_LAYOUTS


def _whole_number(value) -> int | None:
    """A recorded setting that is a positive whole number, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _configs(dataset_dir: Path) -> list[dict] | None:
    """The card's `configs` for a `DatasetDict.save_to_disk` folder: each split's Arrow shards, so that
    `load_dataset` on the folder or its Hub repo (and the Hub viewer) reads the data, not its JSON bookkeeping. A
    split without rows is left out: `load_dataset` refuses a whole folder that lists one ("corresponds to no data")."""
    if not (dataset_dir / "dataset_dict.json").is_file():
        return None
    splits = [split for split in json.loads((dataset_dir / "dataset_dict.json").read_text())["splits"]
              if datasets.load_from_disk(str(dataset_dir / split)).num_rows]
    return [{"config_name": "default",
             "data_files": [{"split": split, "path": f"{split}/data-*.arrow"} for split in splits]}] if splits else None


def write_dataset_card(dataset_dir, sources: list[str] | None = None, *, title: str | None = None,
                       description: str | None = None, splits: dict[str, int] | None = None,
                       task: str = "image-classification") -> Path:
    """Write `dataset_dir/README.md`: one row per source (description, population, licence), label names, splits,
    image size and bit depth, and citations. Sources under one listed licence give it as the card's `license`;
    otherwise `license: other` (`per-source`), linked to `LICENCE_FILE`, which lists each source's terms.

    sources: the data set names; when not given, those its prepare_settings.json records (`recorded_sources`).
    splits: images per split; read from a `save_to_disk` folder's metadata when not given (so are the label names).
    """
    dataset_dir = Path(dataset_dir)
    saved_splits, labels = saved_splits_and_labels(dataset_dir)
    settings = prepare_settings(dataset_dir)
    if sources is None:
        sources = recorded_sources(settings, dataset_dir)
        if not sources:
            raise ValueError(f"{dataset_dir.name!r} records no builder (no readable prepare_settings.json): name its "
                             "sources, write_dataset_card(dataset_dir, [\"kermany\"])")
    names = [str(scrub(name)) for name in sources]
    if not names:
        raise ValueError("A dataset card needs at least one source")
    known = {name: lookup(name) for name in names}
    licences = {SPDX.get(s.licence) if s else None for s in known.values()}
    licence = licences.pop() if len(licences) == 1 and None not in licences else "other"
    card_data = DatasetCardData(
        license=licence,
        license_name=None if licence != "other" else "per-source",
        license_link=None if licence != "other" else LICENCE_FILE,
        pretty_name=title or "Prepared chest X-ray data (" + ", ".join(names) + ")",
        task_categories=[task],
        tags=["chest-x-ray", "radiology", "medical-imaging", "cxrgm", "research-only"],
        configs=_configs(dataset_dir),
    )
    builder = prepared_with(dataset_dir)
    rows = [{"name": name, "source": describe(name, builder=builder),
             "population": f"{s.population}, {s.country}" if s else "not recorded",
             "licence": s.licence if s else "not recorded"} for name, s in known.items()]
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=card_data.pretty_name,
        description=scrub(description) or "Chest X-rays converted to the cxrgm common schema (image, labels, patient, source).",
        sources=rows,
        labels=[code(label) for label in labels],
        splits=sorted((splits or saved_splits).items()),
        citations=sorted({s.citation for s in known.values() if s}),
        size=_whole_number(settings.get("size")),
        bits=_whole_number(settings.get("bits")),
        site_identifiers=holds_site_identifiers(dataset_dir),
    )
    leaks = find_local_paths(str(card), labels)
    if leaks:
        raise ValueError(f"The dataset card would publish local paths {leaks}")
    path = dataset_dir / "README.md"
    path.write_text(str(card) + "\n", encoding="utf-8")
    terms = None if licence != "other" else (
        "# Licence (`per-source`)\n\nEach source of this data set keeps its own terms; whoever uses the data must "
        "respect each of them and cite the sources (the card, README.md, gives the citations):\n\n"
        + "".join(f"- {row['name']}: {row['licence']}\n" for row in rows))
    write_licence_file(dataset_dir, LICENCE_FILE_HEADER, terms, "each source's terms (the card's Sources table)")
    return path
