"""A site's own data in the generic layouts (imagefolder, manifest), built from real CXRs: the 16 Kermany JPEGs of the
sample set and pydicom's test DICOMs."""

import shutil
import warnings
from pathlib import Path

import pytest

from hf_datasets import build_dataset, label_names
from hf_datasets.builders.kermany import kermany_patient
from hf_datasets.builders.sample import KERMANY_SHA256, sample_files
from hf_datasets.errors import LayoutError
from hf_datasets.registry import build_recipe
from hf_datasets.splits import overlapping_patients


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def kermany_class(name: str) -> str:
    return "pneumonia" if "bacteria" in name else "normal"


def copy_to(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)


def test_imagefolder_class_is_the_top_folder_of_images_in_patient_sub_folders(tmp_path):
    """ROOT/CLASS/PATIENT/image: the class is CLASS, not each patient's folder."""
    files = sample_files()
    for name in KERMANY_SHA256:
        copy_to(files[name], tmp_path / "site" / kermany_class(name) / kermany_patient(name) / name)
    ds = build_dataset("imagefolder", tmp_path / "site", split_fractions={"train": 1.0})
    assert label_names(ds) == ["normal", "pneumonia"]
    assert all(row["labels"] == ([0.0, 1.0] if "bacteria" in row["path"] else [1.0, 0.0])
               for row in ds["train"].remove_columns(["image", "mask"]))


def export_dicoms(exported: dict, root) -> None:
    """Copy pydicom's test files (values) to the paths under `root` (keys), as a PACS export lays them out."""
    from pydicom.data import get_testdata_file

    for target, name in exported.items():
        copy_to(get_testdata_file(name, download=False), root / target)


def test_imagefolder_reads_dicom_files_under_any_name_with_the_patient_from_the_header(tmp_path):
    """A PACS export copied into class folders: files named IM0001 (no suffix) are images, the DICOMDIR index is not,
    and two films of one patient share the (hashed) patient id of their headers, so they share a split."""
    files = sample_files()
    for name in list(KERMANY_SHA256)[:4]:
        copy_to(files[name], tmp_path / "site" / kermany_class(name) / name)
    exported = {"normal/export1/IM0001": "RG1_UNCR.dcm", "normal/export2/IM0001": "RG1_UNCI.dcm",
                "pneumonia/export3/IM0001": "RG3_UNCR.dcm", "normal/DICOMDIR": "DICOMDIR"}
    export_dicoms(exported, tmp_path / "site")
    ds = build_dataset("imagefolder", tmp_path / "site", split_fractions={"train": 0.5, "test": 0.5})
    rows = {row["path"]: row for split in ds.values() for row in split.remove_columns(["image", "mask"])}
    assert len(rows) == 7 and "normal/DICOMDIR" not in rows
    first, second = rows["normal/export1/IM0001"], rows["normal/export2/IM0001"]
    assert first["patient_id"] == second["patient_id"] != rows["pneumonia/export3/IM0001"]["patient_id"]
    assert len(first["patient_id"]) == 16 and "RG1" not in first["patient_id"]
    assert first["split"] == second["split"] and first["view"] == "PA"
    assert rows["pneumonia/export3/IM0001"]["labels"] == [0.0, 1.0]


def warnings_saying(text: str, build):
    """(what `build()` returns, the messages of the warnings it gave that contain `text`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build()
    return built, [str(w.message) for w in caught if text in str(w.message)]


def test_imagefolder_reads_jpeg_variants_and_webp_and_names_the_files_it_leaves_out(tmp_path):
    """.jfif / .jpe files are JPEGs and .webp an image Pillow reads: they were left out without a word, as were images
    directly in the root folder (no class) and files of other formats; hidden and system files are passed over."""
    from PIL import Image

    files = sample_files()
    normal, wide = "NORMAL2-IM-1427-0001.jpeg", "person1946_bacteria_4874.jpeg"
    copy_to(files[normal], tmp_path / "site" / "normal" / "a.jfif")
    copy_to(files[normal], tmp_path / "site" / "normal" / "b.JPE")
    (tmp_path / "site" / "pneumonia").mkdir()
    Image.open(files[wide]).save(tmp_path / "site" / "pneumonia" / "c.webp")
    copy_to(files[wide], tmp_path / "site" / "stray.jpeg")
    (tmp_path / "site" / "README.txt").write_text("films by class")
    (tmp_path / "site" / "normal" / "scan.heic").write_bytes(b"\0" * 64)
    (tmp_path / "site" / "pneumonia" / "report.txt").write_text("no image")
    for system in ("normal/Thumbs.db", "normal/desktop.ini", "normal/.DS_Store", "pneumonia/._c.webp"):
        (tmp_path / "site" / system).write_bytes(b"\0" * 64)
    ds, said = warnings_saying("left out", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                                 split_fractions={"train": 1.0}))
    rows = {row["path"]: row for row in ds["train"]}
    assert sorted(rows) == ["normal/a.jfif", "normal/b.JPE", "pneumonia/c.webp"]
    assert rows["pneumonia/c.webp"]["image"].size == Image.open(files[wide]).size
    assert rows["pneumonia/c.webp"]["labels"] == [0.0, 1.0]
    assert len(said) == 2
    assert "1 file(s) left out, images directly in the folder or in a split folder" in said[0]
    assert said[0].endswith(": stray.jpeg")
    assert "2 file(s) left out, neither images of a format read" in said[1]
    assert "{'.heic': 1, '.txt': 1}" in said[1] and said[1].endswith(": normal/scan.heic, pneumonia/report.txt")


def test_imagefolder_leaves_out_images_directly_in_a_split_folder_naming_them(tmp_path):
    """ROOT/train/x.jpeg has no class folder: it became an image of a class named 'train' without a word."""
    files = sample_files()
    names = list(KERMANY_SHA256)
    for name in names[:8]:
        copy_to(files[name], tmp_path / "site" / "train" / kermany_class(name) / name)
    for name in names[8:]:
        copy_to(files[name], tmp_path / "site" / "test" / kermany_class(name) / name)
    copy_to(files[names[0]], tmp_path / "site" / "train" / "stray.jpeg")
    copy_to(files[names[1]], tmp_path / "site" / "Val" / "x.jpeg")
    ds, said = warnings_saying("left out", lambda: build_dataset("imagefolder", tmp_path / "site"))
    assert label_names(ds) == ["normal", "pneumonia"] and sorted(ds) == ["test", "train"]
    assert ds["train"].num_rows == 8 and ds["test"].num_rows == 8
    assert len(said) == 1 and "2 file(s) left out, images directly in the folder or in a split folder" in said[0]
    assert said[0].endswith(": Val/x.jpeg, train/stray.jpeg")


def test_imagefolder_leaves_out_dicom_files_of_other_modalities_than_radiography_as_dicomdir_does(tmp_path):
    """A CT or MR series exported into a class folder beside the films: read as a CXR of that class without a word."""
    exported = {"normal/a/IM0001": "RG1_UNCR.dcm", "pneumonia/b/IM0001": "RG3_UNCR.dcm",
                "normal/c/IM0001": "CT_small.dcm", "pneumonia/d/IM0001.dcm": "MR_small.dcm"}
    export_dicoms(exported, tmp_path / "site")
    ds, said = warnings_saying("left out", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                                 split_fractions={"train": 1.0}))
    assert sorted(ds["train"]["path"]) == ["normal/a/IM0001", "pneumonia/b/IM0001"]
    assert len(said) == 1 and "site: 2 DICOM file(s) left out as their Modality is not among the wanted ones" in said[0]
    assert "modalities=None" in said[0] and "'CT'" not in said[0] and "'MR'" not in said[0]
    _, by_dicomdir = warnings_saying("left out", lambda: build_dataset("dicomdir", tmp_path / "site",
                                                                       split_fractions={"train": 1.0}))
    assert by_dicomdir == said
    ds, said = warnings_saying("left out", lambda: build_dataset("imagefolder", tmp_path / "site", modalities=None,
                                                                 split_fractions={"train": 1.0}))
    assert ds["train"].num_rows == 4 and not said


def test_imagefolder_keeps_one_copy_of_a_dicom_exported_twice_as_dicomdir_does(tmp_path):
    """A study exported twice into the class folders (same SOP Instance UID) counted its image twice, and could put
    its two copies into training and test."""
    import pydicom
    from pydicom.data import get_testdata_file

    exported = {"normal/export1/IM0001": "RG1_UNCR.dcm", "normal/export2/IM0001": "RG1_UNCR.dcm",
                "normal/export2/IM0002": "RG1_UNCI.dcm", "pneumonia/export3/IM0001": "RG3_UNCR.dcm"}
    export_dicoms(exported, tmp_path / "site")
    ds, said = warnings_saying("repeat", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                               split_fractions={"train": 1.0}))
    assert sorted(ds["train"]["path"]) == ["normal/export1/IM0001", "normal/export2/IM0002", "pneumonia/export3/IM0001"]
    assert len(said) == 1 and "site: 1 DICOM file(s) repeat an image found before (same SOP Instance UID)" in said[0]
    uid = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False), stop_before_pixels=True).SOPInstanceUID
    assert uid not in said[0]
    _, by_dicomdir = warnings_saying("repeat", lambda: build_dataset("dicomdir", tmp_path / "site",
                                                                     split_fractions={"train": 1.0}))
    assert by_dicomdir == said


def test_a_seeded_split_of_images_without_patient_ids_says_patients_may_cross_splits(tmp_path):
    """Kermany's person1946 has two films: without patient ids each counts as a patient of its own."""
    files = sample_files()
    for name in KERMANY_SHA256:
        copy_to(files[name], tmp_path / "site" / kermany_class(name) / name)
    _, said = warnings_saying("no patient id", lambda: build_dataset("imagefolder", tmp_path / "site"))
    assert len(said) == 1 and "16 of 16 images have no patient id" in said[0] and "patient_pattern=" in said[0]
    _, said = warnings_saying("no patient id", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                             split_fractions={"train": 1.0}))
    assert not said  # one split: no patient can cross it
    ds, said = warnings_saying("no patient id", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                              patient_pattern=r"(IM-\d+|person\d+)"))
    assert not said and not overlapping_patients(ds)
    rows = [row for split in ds.values() for row in split.remove_columns(["image", "mask"])]
    assert len({row["split"] for row in rows if "person1946" in row["path"]}) == 1

    lines = ["image,label"] + [f"{kermany_class(name)}/{name},{kermany_class(name)}" for name in KERMANY_SHA256]
    (tmp_path / "site" / "labels.csv").write_text("\n".join(lines) + "\n")
    _, said = warnings_saying("no patient id", lambda: build_dataset("manifest", tmp_path / "site",
                                                                     manifest="labels.csv"))
    assert len(said) == 1 and "a patient_id column" in said[0]


def test_imagefolder_takes_the_patient_id_from_the_folder_a_pattern_with_a_slash_names(tmp_path):
    """A hospital tree CLASS/<MRN>/1.jpeg has no id in its file names: a pattern searched in the file stem found none,
    and every patient's first film counted as one patient ("1"), its second as another."""
    files = sample_files()
    films = {}
    for name in KERMANY_SHA256:
        patient = kermany_patient(name)
        films[patient] = films.get(patient, 0) + 1
        copy_to(files[name], tmp_path / "site" / kermany_class(name) / patient / f"{films[patient]}.jpeg")
    assert films["person1946"] == 2
    ds, said = warnings_saying("no patient id", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                              patient_pattern=r"^([^/]+)/",
                                                              split_fractions={"train": 0.5, "test": 0.5}))
    rows = [row for split in ds.values() for row in split.remove_columns(["image", "mask"])]
    assert not said and not overlapping_patients(ds) and sorted(ds) == ["test", "train"]
    assert all(row["patient_id"] == row["path"].split("/")[1] for row in rows) and len(rows) == 16
    assert len({row["split"] for row in rows if row["patient_id"] == "person1946"}) == 1


def test_images_a_patient_pattern_finds_no_id_in_have_none_and_are_named(tmp_path):
    """Films named 1.jpeg in each patient's folder, which a pattern for names like person1946_... does not match:
    each took its stem as its patient id, so all of them were one patient "1", and the warning about images without
    a patient id did not count them."""
    files = sample_files()
    for name in KERMANY_SHA256:
        below_class = name if "person" in name else f"{kermany_patient(name)}/1.jpeg"
        copy_to(files[name], tmp_path / "site" / kermany_class(name) / below_class)
    ds, said = warnings_saying("", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                         patient_pattern=r"^(person[0-9]+)_"))
    unmatched = [m for m in said if "patient_pattern '^(person[0-9]+)_' finds no patient id" in m]
    assert len(unmatched) == 1 and "in 8 of 16 images, which have none then" in unmatched[0]
    assert unmatched[0].endswith(": normal/NORMAL2-IM-1427/1.jpeg, normal/NORMAL2-IM-1430/1.jpeg, "
                                 "normal/NORMAL2-IM-1431/1.jpeg, normal/NORMAL2-IM-1436/1.jpeg, "
                                 "normal/NORMAL2-IM-1437/1.jpeg and 3 more")
    assert any("8 of 16 images have no patient id" in m for m in said)
    rows = [row for split in ds.values() for row in split.select_columns(["path", "patient_id"])]
    assert len({row["patient_id"] for row in rows if row["path"].startswith("normal/")}) == 8
    with pytest.raises(LayoutError, match=r"patient_pattern '\^\(MRN\)_' finds a patient id in none of the 16 "
                                          r"images .*: normal/NORMAL2-IM-1427/1.jpeg, .* and 11 more$"):
        build_dataset("imagefolder", tmp_path / "site", patient_pattern=r"^(MRN)_")


def test_a_manifest_not_found_names_the_option_and_the_tables_the_folder_holds(tmp_path):
    files = sample_files()
    name = next(iter(KERMANY_SHA256))
    copy_to(files[name], tmp_path / "site" / "images" / name)
    (tmp_path / "site" / "labels.csv").write_text(f"image,label,patient_id\nimages/{name},normal,p1\n")
    with pytest.raises(LayoutError, match=r"manifest.jsonl: manifest not found: name the CSV or JSONL file .* with "
                                          r"the `manifest` option: .*holds labels.csv$"):
        build_dataset("manifest", tmp_path / "site")


@pytest.mark.parametrize("builder, header, renames", [
    ("manifest", "image,Label,PatientID", "'Label' to 'label', 'PatientID' to 'patient_id'"),
    ("manifest", "Image,label,Patient ID", "'Image' to 'image', 'Patient ID' to 'patient_id'"),
    ("cxr_folder", "file,Label,Patient_ID", "'Label' to 'label', 'Patient_ID' to 'patient_id'"),
    ("cxr_folder", "File,label,PatientID", "'File' to 'file', 'PatientID' to 'patient_id'"),
])
def test_columns_named_like_those_read_but_not_exactly_are_refused(tmp_path, builder, header, renames):
    """A spreadsheet's 'Label' or 'PatientID' column would be left unread: a set without labels, or one whose patients
    cross splits."""
    files = sample_files()
    lines = [header]
    for name in KERMANY_SHA256:
        copy_to(files[name], tmp_path / "site" / name)
        lines.append(f"{name},{kermany_class(name)},{kermany_patient(name)}")
    (tmp_path / "site" / "labels.csv").write_text("\n".join(lines) + "\n")
    options = {"manifest": "labels.csv"} if builder == "manifest" else {}
    with pytest.raises(LayoutError, match=f"labels.csv: columns are read by their exact names .* rename {renames}$"):
        build_dataset(builder, tmp_path / "site", **options)
    exact = "image,label,patient_id" if builder == "manifest" else "file,label,patient_id"
    (tmp_path / "site" / "labels.csv").write_text("\n".join([exact] + lines[1:]) + "\n")
    ds = build_dataset(builder, tmp_path / "site", **options)
    assert label_names(ds) == ["normal", "pneumonia"] and not overlapping_patients(ds)
    assert {row["patient_id"] for split in ds.values() for row in split.select_columns(["patient_id"])} == {
        kermany_patient(name) for name in KERMANY_SHA256}


def test_cxr_pool_refuses_a_patient_column_named_unlike_the_one_it_reads(tmp_path):
    """A 'PatientID' column was left unread, so exclude_patients (the downstream test patients) left out nobody."""
    files = sample_files()
    lines = ["file,label,PatientID"]
    for name in KERMANY_SHA256:
        copy_to(files[name], tmp_path / "pool" / "site" / name)
        lines.append(f"{name},{kermany_class(name)},{kermany_patient(name)}")
    (tmp_path / "pool" / "site" / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match=r"site/labels.csv: columns are read by their exact names .* rename "
                                          r"'PatientID' to 'patient_id'$"):
        build_dataset("cxr_pool", tmp_path / "pool", exclude_patients=["person1946"])
    (tmp_path / "pool" / "site" / "labels.csv").write_text("\n".join(["file,label,patient_id"] + lines[1:]) + "\n")
    kept = build_dataset("cxr_pool", tmp_path / "pool", exclude_patients=["person1946"])["train"]["path"]
    assert len(kept) == 14 and not any("person1946" in path for path in kept)


def test_an_unreadable_file_stopping_a_build_says_how_to_leave_such_files_out(tmp_path):
    """build_dataset's error names the file and its own on_error argument; training's names its flag only."""
    from pydicom.data import get_testdata_file

    from hf_datasets.errors import TruncatedDicomError
    from train import data

    films = {"normal/a/IM0001": get_testdata_file("RG1_UNCR.dcm", download=False),
             "pneumonia/b/IM0001": get_testdata_file("RG3_UNCR.dcm", download=False)}
    for target, source in films.items():
        copy_to(source, tmp_path / "site" / target)
    whole = (tmp_path / "site" / "normal" / "a" / "IM0001").read_bytes()
    (tmp_path / "site" / "normal" / "a" / "IM0002").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(TruncatedDicomError) as stopped:
        build_dataset("imagefolder", tmp_path / "site", split_fractions={"train": 1.0})
    assert stopped.value.path.endswith("IM0002") and stopped.value.__notes__ == [
        'on_error="skip" leaves unreadable files out of the build instead, naming each in a warning']
    with pytest.raises(TruncatedDicomError) as stopped:
        data.load_splits("imagefolder", str(tmp_path / "site"), None, {"split_fractions": {"train": 1.0}})
    assert "--dataset_options" in str(stopped.value) and not getattr(stopped.value, "__notes__", None)
    with pytest.warns(UserWarning, match="skipped .*IM0002: pixel data incomplete"):
        ds = build_dataset("imagefolder", tmp_path / "site", split_fractions={"train": 1.0}, on_error="skip")
    assert ds["train"].num_rows == 2


def test_a_mask_of_another_shape_than_its_image_is_refused_when_built_and_prepared(tmp_path):
    """A mask drawn at another resolution fits its image; one of another shape (the mask of another image) would be
    stretched off the lungs."""
    import numpy as np
    from PIL import Image

    from hf_datasets.errors import ImageReadError
    from hf_datasets.prepare import prepare

    files = sample_files()
    normal, wide = "NORMAL2-IM-1427-0001.jpeg", "person1946_bacteria_4874.jpeg"
    for name in (normal, wide):
        copy_to(files[name], tmp_path / "site" / name)
    shapes = {name: Image.open(files[name]).size for name in (normal, wide)}
    assert abs(shapes[normal][0] / shapes[normal][1] - shapes[wide][0] / shapes[wide][1]) > 0.1
    for name, (width, height) in shapes.items():  # each lung mask at half its image's resolution
        lungs = np.zeros((height // 2, width // 2), np.uint8)
        lungs[height // 8: 3 * height // 8, width // 8: 3 * width // 8] = 255
        Image.fromarray(lungs).save(tmp_path / "site" / f"{name}_mask.png")
    lines = ["image,mask,patient_id", f"{normal},{normal}_mask.png,a", f"{wide},{wide}_mask.png,b"]
    (tmp_path / "site" / "lungs.csv").write_text("\n".join(lines) + "\n")
    options = {"manifest": "lungs.csv", "split_fractions": {"train": 1.0}}
    assert build_dataset("manifest", tmp_path / "site", **options)["train"][0]["mask"].size == (
        shapes[normal][0] // 2, shapes[normal][1] // 2)

    lines[2] = f"{wide},{normal}_mask.png,b"  # the other image's mask
    (tmp_path / "site" / "lungs.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ImageReadError, match=f"{normal}_mask.png: mask of .* for the image .*{wide} of "
                                             f"{shapes[wide][0]}x{shapes[wide][1]}: another shape"):
        build_dataset("manifest", tmp_path / "site", **options)
    report = prepare("manifest", tmp_path / "site", tmp_path / "out", size=32, manifest="lungs.csv", progress=False,
                     split_fractions={"train": 1.0})
    assert report["written"] == 1 and [skip["path"] for skip in report["skipped_files"]] == [wide]


@pytest.mark.parametrize("builder", ["manifest", "cxr_folder", "imagefolder"])
def test_class_names_that_differ_only_in_case_are_refused(tmp_path, builder):
    """A spreadsheet's 'Pneumonia' beside 'pneumonia' (or a PNEUMONIA folder merged beside a pneumonia one) would make
    a third class of some pneumonia films."""
    files = sample_files()
    lines = ["image,label,patient_id" if builder == "manifest" else "file,label,patient_id"]
    for number, name in enumerate(KERMANY_SHA256):
        label = kermany_class(name)
        spelt = label.title() if label == "pneumonia" and number % 3 == 0 else label
        copy_to(files[name], tmp_path / "site" / (spelt if builder == "imagefolder" else "") / name)
        lines.append(f"{name},{spelt},{kermany_patient(name)}")
    (tmp_path / "site" / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match=r"site(/labels.csv)?: class names that differ only in case would be "
                                          r"classes of their own: \[\{'Pneumonia': 3, 'pneumonia': 5\}\]"):
        build_dataset(builder, tmp_path / "site", **({"manifest": "labels.csv"} if builder == "manifest" else {}))


def test_patient_folders_put_straight_into_split_folders_are_said_to_be_classes(tmp_path):
    """ROOT/train/<patient>/x.jpeg made one class per patient folder without a word: split by patient, such folders
    never repeat across splits, while each real class has images in several."""
    files = sample_files()
    patients = sorted({kermany_patient(name) for name in KERMANY_SHA256})
    for name in KERMANY_SHA256:
        split = "train" if patients.index(kermany_patient(name)) % 2 else "test"
        copy_to(files[name], tmp_path / "mistaken" / split / kermany_patient(name) / name)
        copy_to(files[name], tmp_path / "site" / split / kermany_class(name) / kermany_patient(name) / name)
    ds, said = warnings_saying("share no class folder", lambda: build_dataset("imagefolder", tmp_path / "mistaken"))
    assert len(label_names(ds)) == 15
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'mistaken'}: the split folders (test, train) share no "
                                                 "class folder")
    assert "(ROOT/SPLIT/CLASS/<patient>/x.png)" in said[0] and said[0].endswith(
        "Class folders: NORMAL2-IM-1427, NORMAL2-IM-1430, NORMAL2-IM-1431, NORMAL2-IM-1436, NORMAL2-IM-1437 and 10 "
        "more")
    ds, said = warnings_saying("share no class folder", lambda: build_dataset("imagefolder", tmp_path / "site"))
    assert label_names(ds) == ["normal", "pneumonia"] and sorted(ds) == ["test", "train"] and not said


def kermany_table(tmp_path, builder: str, third_column: str, value) -> tuple[Path, list[str], Path, dict]:
    """The 16 sample CXRs in pool/site with the labels.csv lines (not yet written) that `builder` reads: file (image
    for manifest), label and `third_column` = value(name). Returns the folder, the lines, the data_dir and options."""
    files = sample_files()
    folder = tmp_path / "pool" / "site"
    lines = [f"{'image' if builder == 'manifest' else 'file'},label,{third_column}"]
    for name in KERMANY_SHA256:
        copy_to(files[name], folder / name)
        lines.append(f"{name},{kermany_class(name)},{value(name)}")
    data_dir = tmp_path / "pool" if builder == "cxr_pool" else folder
    return folder, lines, data_dir, {"manifest": "labels.csv"} if builder == "manifest" else {}


@pytest.mark.parametrize("builder", ["manifest", "cxr_folder", "cxr_pool"])
def test_a_csv_row_longer_than_its_header_is_refused_naming_its_line(tmp_path, builder):
    """An unquoted comma in a value shifts the values after it into the wrong columns: cxr_folder and manifest read
    them so without a word, and cxr_pool stopped on an AttributeError."""
    folder, lines, data_dir, options = kermany_table(tmp_path, builder, "patient_id", kermany_patient)
    name = list(KERMANY_SHA256)[2]
    lines[3] = f"{name},{kermany_class(name)},{kermany_patient(name)}, left"
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match=r"site/labels.csv: line 4 has 4 values but the header names 3 columns: put "
                                          r"a value holding a comma in quotes"):
        build_dataset(builder, data_dir, **options)
    lines[3] = f'{name},{kermany_class(name)},"{kermany_patient(name)}, left"'
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    rows = [row for split in build_dataset(builder, data_dir, **options).values()
            for row in split.select_columns(["path", "patient_id"])]
    assert len(rows) == 16 and {row["patient_id"] for row in rows if row["path"].endswith(name)} == {
        f"{kermany_patient(name)}, left"}


@pytest.mark.parametrize("builder", ["manifest", "cxr_folder", "cxr_pool"])
def test_a_csv_row_shorter_than_its_header_is_refused_naming_its_line(tmp_path, builder):
    """A row with fewer values than the header names columns (a line cut short, a value left out) was read with
    None in its last columns, without a word: here a patient id, so the patient's films could cross splits."""
    folder, lines, data_dir, options = kermany_table(tmp_path, builder, "patient_id", kermany_patient)
    name = list(KERMANY_SHA256)[2]
    lines[3] = f"{name},{kermany_class(name)}"
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match=r"site/labels.csv: line 4 has 2 values but the header names 3 columns: "
                                          r"the line is cut short"):
        build_dataset(builder, data_dir, **options)
    lines[3] = f"{name},{kermany_class(name)},"  # an empty patient id is a value
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    assert sum(split.num_rows for split in build_dataset(builder, data_dir, **options).values()) == 16


@pytest.mark.parametrize("builder", ["manifest", "cxr_folder", "cxr_pool"])
def test_a_csv_not_saved_as_utf8_is_refused_naming_its_line(tmp_path, builder):
    """A table a spreadsheet saved as Windows-1252 (a hospital named with an 'ô') stopped the build on a
    UnicodeDecodeError that named no file. It is refused, naming the line, and not read in a guessed encoding; saved
    as UTF-8, the name is read as written."""
    folder, lines, data_dir, options = kermany_table(tmp_path, builder, "source", lambda name: "Hôpital Saint-Éloi")
    (folder / "labels.csv").write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    offset = len(lines[0]) + 1 + lines[1].index("ô")
    with pytest.raises(LayoutError, match=rf"site/labels.csv: line 2 holds a byte that is not UTF-8 \(0xf4 at byte "
                                          rf"offset {offset}\): the file was saved in another encoding .* save it as "
                                          r"UTF-8 \(Excel: 'CSV UTF-8'"):
        build_dataset(builder, data_dir, **options)
    (folder / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    built = build_dataset(builder, data_dir, **options)
    assert {source for split in built.values() for source in split["source"]} == {"Hôpital Saint-Éloi"}


def test_a_jsonl_manifest_line_that_is_no_json_object_is_refused_naming_it(tmp_path):
    """A line that is not JSON stopped the build on a JSONDecodeError naming neither the file nor its line, a line not
    saved as UTF-8 on a UnicodeDecodeError, and one holding a list on an AttributeError; a manifest Notepad saved with
    a byte-order mark was refused as not JSON."""
    files = sample_files()
    folder = tmp_path / "site"
    lines = []
    for name in KERMANY_SHA256:
        copy_to(files[name], folder / name)
        lines.append(f'{{"image": "{name}", "label": "{kermany_class(name)}", "source": "Hôpital"}}')
    manifest = folder / "manifest.jsonl"
    for line, written, reason in (
            ('{"image": "x.jpeg", "label": "normal"', "utf-8", r"line 4 is not JSON \(Expecting ',' delimiter at "
                                                               r"column 38\): each line holds one object"),
            ('["x.jpeg", "normal"]', "utf-8", r"line 4 is JSON but no object"),
            (lines[3], "cp1252", r"line 4 holds a byte that is not UTF-8 \(0xf4 at byte offset \d+\): the file "
                                 r"was saved in another encoding")):
        manifest.write_bytes(b"\n".join([text.encode() for text in lines[:3]] + [line.encode(written)]
                                        + [text.encode() for text in lines[4:]]))
        with pytest.raises(LayoutError, match=rf"site/manifest.jsonl: {reason}"):
            build_dataset("manifest", folder)
    manifest.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    built = build_dataset("manifest", folder)
    assert sum(split.num_rows for split in built.values()) == 16
    assert {source for split in built.values() for source in split["source"]} == {"Hôpital"}


def test_a_dicom_exported_into_two_class_folders_is_named_with_both_classes(tmp_path):
    """One image filed under two classes kept the first folder's class, and the warning about repeats did not say
    that the copies' labels differed."""
    import pydicom
    from pydicom.data import get_testdata_file

    exported = {"normal/export1/IM0001": "RG1_UNCR.dcm", "pneumonia/export2/IM0001": "RG1_UNCR.dcm",
                "normal/export2/IM0002": "RG1_UNCR.dcm", "pneumonia/export3/IM0001": "RG3_UNCR.dcm"}
    export_dicoms(exported, tmp_path / "site")
    ds, said = warnings_saying("repeat", lambda: build_dataset("imagefolder", tmp_path / "site",
                                                               split_fractions={"train": 1.0}))
    rows = {row["path"]: row["labels"] for row in ds["train"].select_columns(["path", "labels"])}
    assert rows == {"normal/export1/IM0001": [1.0, 0.0], "pneumonia/export3/IM0001": [0.0, 1.0]}
    assert len(said) == 1 and "site: 2 DICOM file(s) repeat an image found before" in said[0]
    assert said[0].endswith("the first copy of each is kept, with its labels: 1 of the copies left out had other "
                            "labels, which are not used (copy kept -> copy left out: normal/export1/IM0001 -> "
                            "pneumonia/export2/IM0001); give each image one set of labels (list it once, or keep it in "
                            "the folder of its class only)")
    uid = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False), stop_before_pixels=True).SOPInstanceUID
    assert uid not in said[0]


@pytest.mark.parametrize("builder,suffix,column", [("manifest", "", "image"), ("cxr_folder", ".dcm", "file")])
def test_a_table_keeps_one_copy_of_a_dicom_listed_twice_as_dicomdir_and_imagefolder_do(tmp_path, builder, suffix,
                                                                                         column):
    """A study exported twice and listed under both paths (the same SOP Instance UID) counted its images twice, in
    training and test alike (manifest; cxr_folder, which read each .dcm row's header); dicomdir and imagefolder kept
    one copy."""
    import pydicom
    from pydicom.data import get_testdata_file

    site = tmp_path / "site"
    first, second, other = (f"{name}{suffix}" for name in ("export1/IM0001", "export2/IM0001", "export2/IM0002"))
    export_dicoms({first: "RG1_UNCR.dcm", second: "RG1_UNCR.dcm", other: "RG3_UNCR.dcm"}, site)
    jpeg = list(KERMANY_SHA256)[0]
    copy_to(sample_files()[jpeg], site / jpeg)
    lines = [f"{column},label", f"{first},normal", f"{other},pneumonia", f"{second},normal", f"{jpeg},normal"]
    (site / "labels.csv").write_text("\n".join(lines) + "\n")
    options = {"manifest": "labels.csv"} if builder == "manifest" else {}
    recipe, said = warnings_saying("repeat", lambda: build_recipe(builder, site, **options))
    assert [record["path"] for record in recipe.records] == [first, other, jpeg]
    assert said == [f"{site / 'labels.csv'}: 1 DICOM file(s) repeat an image found before (same SOP Instance UID); "
                    "the first copy of each is kept"]
    ds = build_dataset(builder, site, split_fractions={"train": 0.5, "test": 0.5}, **options)
    assert sorted(path for split in ds.values() for path in split["path"]) == sorted([first, other, jpeg])
    uid = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False), stop_before_pixels=True).SOPInstanceUID
    assert uid not in said[0]


@pytest.mark.parametrize("builder", ["manifest", "cxr_folder"])
def test_rows_repeating_a_dicom_with_other_labels_are_counted_and_named(tmp_path, builder):
    """An image listed twice with different labels took the first row's without a word: the warning about repeats
    now counts the rows left out whose labels differ (unknown matching unknown) and names each with the row kept."""
    import pydicom
    from pydicom.data import get_testdata_file

    site = tmp_path / "site"
    export_dicoms({"export1/IM0001.dcm": "RG1_UNCR.dcm", "export1/IM0002.dcm": "RG3_UNCR.dcm",
                   "export2/IM0001.dcm": "RG1_UNCR.dcm", "export2/IM0002.dcm": "RG3_UNCR.dcm",
                   "export3/IM0001.dcm": "RG1_UNCR.dcm"}, site)
    jpeg = list(KERMANY_SHA256)[0]
    copy_to(sample_files()[jpeg], site / jpeg)
    lines = ["image,label" if builder == "manifest" else "file,label", "export1/IM0001.dcm,normal",
             "export1/IM0002.dcm,", "export2/IM0001.dcm,pneumonia", "export2/IM0002.dcm,", "export3/IM0001.dcm,normal",
             f"{jpeg},pneumonia"]
    (site / "labels.csv").write_text("\n".join(lines) + "\n")
    options = {"manifest": "labels.csv"} if builder == "manifest" else {}
    recipe, said = warnings_saying("repeat", lambda: build_recipe(builder, site, **options))
    assert [record["path"] for record in recipe.records] == ["export1/IM0001.dcm", "export1/IM0002.dcm", jpeg]
    assert recipe.label_names == ["normal", "pneumonia"] and recipe.records[0]["labels"] == [1.0, 0.0]
    assert said == [f"{site / 'labels.csv'}: 3 DICOM file(s) repeat an image found before (same SOP Instance UID); "
                    "the first copy of each is kept, with its labels: 1 of the copies left out had other labels, "
                    "which are not used (copy kept -> copy left out: export1/IM0001.dcm -> export2/IM0001.dcm); give "
                    "each image one set of labels (list it once, or keep it in the folder of its class only)"]
    uid = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False), stop_before_pixels=True).SOPInstanceUID
    assert uid not in said[0]


def test_a_dicom_file_with_an_image_suffix_is_read_as_dicom_by_every_reader(tmp_path):
    """A DICOM file renamed scan.png was DICOM to the manifest builder, read_grey and predict, but an image file to
    imagefolder: refused as no image, or read as the TIFF its preamble may hold (pydicom's RG1_UNCR.dcm does), raw
    pixels without the header's window, patient and view."""
    import numpy as np

    from hf_datasets.images import read_grey
    from train.predict import read_image

    export_dicoms({"normal/a/scan.png": "RG1_UNCR.dcm", "pneumonia/b/IM0001": "RG3_UNCR.dcm"}, tmp_path / "site")
    lines = ["image,label", "normal/a/scan.png,normal", "pneumonia/b/IM0001,pneumonia"]
    (tmp_path / "site" / "labels.csv").write_text("\n".join(lines) + "\n")
    built = {}
    for builder, options in (("imagefolder", {}), ("manifest", {"manifest": "labels.csv"})):
        rows = build_dataset(builder, tmp_path / "site", split_fractions={"train": 1.0}, **options)["train"]
        built[builder] = {row["path"]: row for row in rows}
    by_folder, by_manifest = built["imagefolder"]["normal/a/scan.png"], built["manifest"]["normal/a/scan.png"]
    assert by_folder["patient_id"] == by_manifest["patient_id"] is not None and by_folder["view"] == "PA"
    assert np.array_equal(np.asarray(by_folder["image"]), np.asarray(by_manifest["image"]))
    grey = read_grey(tmp_path / "site" / "normal" / "a" / "scan.png")
    assert grey.dtype == np.float32 and grey.shape == np.asarray(by_folder["image"]).shape
    assert np.array_equal(read_image(tmp_path / "site" / "normal" / "a" / "scan.png"), grey)


def test_cxr_folder_and_cxr_pool_read_a_listed_dicom_file_as_dicom(tmp_path):
    """A DICOM file listed in labels.csv went to Pillow in cxr_folder and cxr_pool: refused as no image. Both now read
    a .dcm / .dicom file as manifest does (they tell it by its name: a table's files are not opened to tell)."""
    import numpy as np

    export_dicoms({"scan.dicom": "RG1_UNCR.dcm", "IM0001.dcm": "RG3_UNCR.dcm"}, tmp_path / "pool" / "site")
    folder = tmp_path / "pool" / "site"
    (folder / "labels.csv").write_text("file,label\nscan.dicom,normal\nIM0001.dcm,pneumonia\n")
    (folder / "manifest.csv").write_text("image,label\nscan.dicom,normal\nIM0001.dcm,pneumonia\n")
    by_manifest = {row["path"]: row for row in build_dataset("manifest", folder, manifest="manifest.csv",
                                                             split_fractions={"train": 1.0})["train"]}
    by_folder = {row["path"]: row
                 for row in build_dataset("cxr_folder", folder, split_fractions={"train": 1.0})["train"]}
    by_pool = {row["path"]: row for row in build_dataset("cxr_pool", tmp_path / "pool")["train"]}
    assert sorted(by_folder) == sorted(by_manifest) and sorted(by_pool) == ["site/IM0001.dcm", "site/scan.dicom"]
    for name, expected in by_manifest.items():
        assert expected["patient_id"] is not None and expected["view"] is not None
        for row in (by_folder[name], by_pool[f"site/{name}"]):
            assert (row["patient_id"], row["study_id"], row["view"]) == (
                expected["patient_id"], expected["study_id"], expected["view"])
            assert np.array_equal(np.asarray(row["image"]), np.asarray(expected["image"]))


def test_cxr_pool_keeps_one_copy_of_a_dicom_exported_again_with_other_bytes(tmp_path):
    """cxr_pool told duplicates by their bytes and join keys only: the same DICOM exported again (another header
    byte, the same SOP Instance UID), in one folder or in two pooled ones, was kept twice and could land in training
    and test alike. The first copy is kept now, with a warning that counts the others and names no UID."""
    import pydicom
    from pydicom.data import get_testdata_file

    original = get_testdata_file("RG1_UNCR.dcm", download=False)
    pool = tmp_path / "pool"
    export_dicoms({"a/x.dcm": "RG1_UNCR.dcm", "a/z.dcm": "RG3_UNCR.dcm"}, pool)
    jpeg = list(KERMANY_SHA256)[0]
    copy_to(sample_files()[jpeg], pool / "b" / jpeg)
    for target, description in (("a/y.dcm", "export 2"), ("b/w.dcm", "export 3")):
        copy = pydicom.dcmread(original)
        copy.SeriesDescription = description
        copy.save_as(pool / target)
    (pool / "a" / "labels.csv").write_text("file\nx.dcm\ny.dcm\nz.dcm\n")
    (pool / "b" / "labels.csv").write_text(f"file\nw.dcm\n{jpeg}\n")
    assert len({(pool / name).read_bytes() for name in ("a/x.dcm", "a/y.dcm", "b/w.dcm")}) == 3
    recipe, said = warnings_saying("repeat", lambda: build_recipe("cxr_pool", pool))
    assert [record["path"] for record in recipe.records] == ["a/x.dcm", "a/z.dcm", f"b/{jpeg}"]
    assert said == [f"{pool}: 2 DICOM file(s) repeat an image found before (same SOP Instance UID); the first copy "
                    "of each is kept"]
    assert "(2 duplicates and 0 images" in recipe.about
    assert pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID not in said[0]


def test_cxr_pool_takes_one_folder_given_as_a_string(tmp_path):
    """prepare's `--option folders=site` passes the string 'site', which cxr_pool read letter by letter: 'label file
    not found' for pool/s/labels.csv. One folder may be named so, as one view is (views=PA)."""
    import datasets

    from hf_datasets.prepare import main

    jpeg = list(KERMANY_SHA256)[0]
    for folder in ("site", "other"):
        copy_to(sample_files()[jpeg], tmp_path / "pool" / folder / jpeg)
        (tmp_path / "pool" / folder / "labels.csv").write_text(f"file\n{jpeg}\n")
    assert [r["path"] for r in build_recipe("cxr_pool", tmp_path / "pool", folders="site").records] == [f"site/{jpeg}"]
    main(["--dataset", "cxr_pool", "--data_dir", str(tmp_path / "pool"), "--output_dir", str(tmp_path / "out"),
          "--size", "32", "--option", "folders=site"])
    assert datasets.load_from_disk(str(tmp_path / "out"))["train"]["path"] == [f"site/{jpeg}"]


def test_a_dicom_file_listed_under_an_image_name_is_read_as_dicom_when_built_and_prepared(tmp_path, caplog):
    """cxr_folder and cxr_pool hand a file listed as scan.png to Pillow: a DICOM file a PACS export named so stopped
    the build as 'not a recognised image format'. Its 'DICM' marker, read from the file as it is opened, now sends it
    to the DICOM reader in builds and preparations alike (pydicom's RG1_UNCI.dcm has no TIFF preamble, RG3_UNCR.dcm
    one that Pillow reads); no header value is logged, and a file that is neither is refused, naming it."""
    import datasets
    import numpy as np

    from hf_datasets.errors import ImageReadError
    from hf_datasets.prepare import prepare

    folder = tmp_path / "pool" / "site"
    export_dicoms({"scan.png": "RG1_UNCI.dcm", "film.png": "RG3_UNCR.dcm"}, folder)
    files = sample_files()
    jpegs = list(KERMANY_SHA256)[:2]
    for name in jpegs:
        copy_to(files[name], folder / name)
    rows = ["scan.png,normal,a", "film.png,pneumonia,b"] + [f"{name},{kermany_class(name)},c" for name in jpegs]
    (folder / "labels.csv").write_text("\n".join(["file,label,patient_id"] + rows) + "\n")
    (folder / "manifest.csv").write_text("\n".join(["image,label,patient_id"] + rows) + "\n")
    whole = {"split_fractions": {"train": 1.0}}
    caplog.set_level("DEBUG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_manifest = {row["path"]: np.asarray(row["image"])
                       for row in build_dataset("manifest", folder, manifest="manifest.csv", **whole)["train"]}
        by_folder = {row["path"]: np.asarray(row["image"])
                     for row in build_dataset("cxr_folder", folder, **whole)["train"]}
        by_pool = {row["path"].removeprefix("site/"): np.asarray(row["image"])
                   for row in build_dataset("cxr_pool", tmp_path / "pool")["train"]}
        reports = {name: prepare(name, folder, tmp_path / name, size=64, progress=False, **whole, **options)
                   for name, options in (("manifest", {"manifest": "manifest.csv"}), ("cxr_folder", {}))}
    assert sorted(by_manifest) == sorted(by_folder) == sorted(by_pool) == sorted(["scan.png", "film.png", *jpegs])
    assert by_manifest["scan.png"].dtype == np.uint8 and by_manifest["scan.png"].shape == (1955, 1841)
    for name, expected in by_manifest.items():
        assert np.array_equal(by_folder[name], expected) and np.array_equal(by_pool[name], expected)
    assert [report["written"] for report in reports.values()] == [4, 4]
    shards = {name: {row["path"]: np.asarray(row["image"])
                     for row in datasets.load_from_disk(str(tmp_path / name))["train"]} for name in reports}
    assert all(np.array_equal(shards["cxr_folder"][name], image) for name, image in shards["manifest"].items())
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [text for text in said if "RG1" in text or "RG3" in text or "CompressedSamples" in text]

    (folder / "notes.png").write_text("not an image\n" * 20)
    (folder / "labels.csv").write_text("\n".join(["file,label,patient_id"] + rows + ["notes.png,normal,d"]) + "\n")
    with pytest.raises(ImageReadError, match=r"site/notes.png: not a recognised image format"):
        build_dataset("cxr_folder", folder, **whole)


def test_reading_an_image_file_opens_it_once(tmp_path, monkeypatch):
    """read_grey (which preparation reads every image with) opened each PNG/JPEG twice: once to look for a DICOM
    marker, once for Pillow. The marker is read from the file Pillow reads."""
    import builtins

    from hf_datasets.images import read_grey

    image = tmp_path / "x.jpeg"
    copy_to(sample_files()[list(KERMANY_SHA256)[0]], image)
    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    assert read_grey(image).ndim == 2
    assert opened.count(str(image)) == 1


def test_a_manifest_names_dicom_images_by_sop_instance_uid_and_refuses_paths_that_disagree(tmp_path):
    """A hospital's label table keyed by SOP Instance UID could not be used: every row needed an `image` path, to be
    made by hand. A row may now name its DICOM image by `sop_instance_uid` alone, found under data_dir by header (a
    UID that no file holds: the row is left out, named by number, never by UID); a row giving both, whose file holds
    another image, is refused (its label would go to another image)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    site = tmp_path / "site"
    uids = {}
    for target, name in {"site_a/IM0001": "RG1_UNCR.dcm", "site_b/IM0001": "RG3_UNCR.dcm"}.items():
        dataset = pydicom.dcmread(get_testdata_file(name, download=False))
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uids[target] = generate_uid()
        (site / target).parent.mkdir(parents=True)
        dataset.save_as(site / target)
    missing = generate_uid()
    lines = ["sop_instance_uid,label", f"{uids['site_b/IM0001']},pneumonia", f"{missing},normal",
             f"{uids['site_a/IM0001']},normal"]
    (site / "labels.csv").write_text("\n".join(lines) + "\n")
    recipe, said = warnings_saying("sop_instance_uid", lambda: build_recipe("manifest", site, manifest="labels.csv"))
    assert [(r["path"], r["labels"]) for r in recipe.records] == [("site_b/IM0001", [0.0, 1.0]),
                                                                  ("site_a/IM0001", [1.0, 0.0])]
    assert said == [f"{site / 'labels.csv'}: 1 rows name a sop_instance_uid that no DICOM file under {site} holds "
                    "(whole); they are left out: rows 2"] and missing not in said[0]

    lines = ["image,sop_instance_uid,label", f"site_a/IM0001,{uids['site_a/IM0001']},normal",
             f"site_b/IM0001,{uids['site_a/IM0001']},pneumonia"]
    (site / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError, match=r"1 rows name in 'image' a DICOM file holding another image than their "
                                          r"'sop_instance_uid': row 2 \(site_b/IM0001\)") as refused:
        build_recipe("manifest", site, manifest="labels.csv")
    assert not any(uid in str(refused.value) for uid in uids.values())


def test_tables_leave_out_dicom_rows_of_other_modalities_than_radiography_naming_them(tmp_path):
    """A hospital export's label table listed a CT scout and an MR image beside the films: manifest, cxr_folder and
    cxr_pool read both as CXRs with the labels of their rows. Left out now, as the folder builders do, named by row
    number (a pool's by file; no header value); `modalities=None` keeps them."""
    exported = {"a.dcm": "RG1_UNCR.dcm", "b.dcm": "CT_small.dcm", "c.dcm": "MR_small.dcm", "d.dcm": "RG3_UNCR.dcm"}
    site = tmp_path / "pool" / "site"
    export_dicoms(exported, site)
    (site / "labels.csv").write_text("file,label\na.dcm,normal\nb.dcm,pneumonia\nc.dcm,normal\nd.dcm,pneumonia\n")
    (site / "manifest.csv").write_text("image,label\na.dcm,normal\nb.dcm,pneumonia\nc.dcm,normal\nd.dcm,pneumonia\n")
    left_out = " left out as their Modality is not among the wanted ones"
    cases = {"manifest": (site, {"manifest": "manifest.csv"}, f"{site / 'manifest.csv'}: 2 DICOM file(s) (rows 2, 3)"),
             "cxr_folder": (site, {}, f"{site / 'labels.csv'}: 2 DICOM file(s) (rows 2, 3)"),
             "cxr_pool": (tmp_path / "pool", {}, f"{tmp_path / 'pool'}: 2 DICOM file(s) (site/b.dcm, site/c.dcm)")}
    for builder, (root, options, expected) in cases.items():
        recipe, said = warnings_saying("left out", lambda: build_recipe(builder, root, **options))
        assert [Path(r["path"]).name for r in recipe.records] == ["a.dcm", "d.dcm"], builder
        assert len(said) == 1 and said[0].startswith(expected + left_out), said
        assert "'CT'" not in said[0] and "'MR'" not in said[0] and "modalities=None" in said[0]
        recipe, said = warnings_saying("left out", lambda: build_recipe(builder, root, modalities=None, **options))
        assert len(recipe.records) == 4 and not said, builder
