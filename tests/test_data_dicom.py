"""read_dicom: decoding order, polarity, metadata allow-list and specific errors."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
from factory import RT_PLAN_STORAGE, write_dicom  # noqa: E402

from hf_datasets.dicom import read_dicom  # noqa: E402
from hf_datasets.errors import (  # noqa: E402
    DicomError, MissingDecoderError, NoPixelDataError, NonImageDicomError, NotDicomError, TruncatedDicomError)


def dicom_testfile(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not installed (pydicom-data)")
    return path


@pytest.fixture(scope="module")
def real_cr():
    return read_dicom(dicom_testfile("RG1_UNCR.dcm"))


def test_real_chest_cr_range_and_metadata(real_cr):
    image, meta = real_cr
    assert image.dtype == np.float32 and image.shape == (1955, 1841)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert meta["view"] == "PA" and meta["modality"] == "CR"
    assert meta["photometric_interpretation"] == "MONOCHROME1"
    assert meta["bits_stored"] == 15 and (meta["rows"], meta["columns"]) == (1955, 1841)
    assert meta["pixel_spacing_mm"] is None  # PixelSpacing [0, 0] means unknown


def test_real_cr_lungs_darker_than_mediastinum(real_cr):
    image, _ = real_cr
    rows, cols = image.shape
    band = slice(int(0.3 * rows), int(0.6 * rows))
    mediastinum = image[band, int(0.45 * cols): int(0.55 * cols)].mean()
    lungs = np.r_[image[band, int(0.2 * cols): int(0.33 * cols)].ravel(),
                  image[band, int(0.67 * cols): int(0.8 * cols)].ravel()].mean()
    assert lungs < mediastinum - 0.1


def test_lossless_j2k_decodes_identical(real_cr):
    j2k, _ = read_dicom(dicom_testfile("RG1_J2KR.dcm"))
    assert np.array_equal(j2k, real_cr[0])


def test_metadata_has_no_phi(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", patient_id="SECRET-ID", patient_name="Doe^Jane")
    _, meta = read_dicom(path)
    text = repr(meta)
    for value in ("SECRET-ID", "Doe", "19700101", "20200101"):
        assert value not in text
    assert len(meta["patient_id_hash"]) == 16 and meta["pixel_spacing_mm"] == [0.2, 0.2]
    assert set(meta) == {"view", "pixel_spacing_mm", "modality", "photometric_interpretation",
                         "bits_allocated", "bits_stored", "rows", "columns", "number_of_frames",
                         "transfer_syntax", "patient_id_hash", "study_uid_hash",
                         "series_uid_hash", "sop_uid_hash"}


@pytest.mark.parametrize("voi,window", [("header", (2000, 3000)), ("full", None),
                                        ("percentiles", None), ("header", None)])
def test_monochrome1_is_exact_inverse(tmp_path, voi, window):
    pixels = np.random.default_rng(0).integers(0, 4096, (30, 20)).astype(np.uint16)
    one = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", window=window)
    two = write_dicom(tmp_path / "m2.dcm", pixels, photometric="MONOCHROME2", window=window)
    inverted, _ = read_dicom(one, voi=voi)
    plain, _ = read_dicom(two, voi=voi)
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-6)
    assert plain.min() >= 0 and plain.max() <= 1


def test_window_clips_outside_range(tmp_path):
    pixels = np.array([[0, 1000, 2000, 3000, 4000]], np.uint16)
    image, _ = read_dicom(write_dicom(tmp_path / "w.dcm", pixels, window=(2000, 2001)))
    np.testing.assert_allclose(image[0], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-3)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_rescale_and_window_follow_the_standard(tmp_path, function):
    """PS3.3 C.11.2.1.2: modality rescale, then each VOI LUT function, against the formulas in float64."""
    pixels = np.random.default_rng(1).integers(0, 4096, (40, 30)).astype(np.uint16)
    path = write_dicom(tmp_path / "r.dcm", pixels, window=(300, 1200))
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept, ds.VOILUTFunction = 0.5, -100, function
    ds.save_as(path)
    image, _ = read_dicom(path)
    x, c, w = pixels * 0.5 - 100.0, 300.0, 1200.0
    expected = {"LINEAR": np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1),
                "LINEAR_EXACT": np.clip((x - c) / w + 0.5, 0, 1),
                "SIGMOID": 1 / (1 + np.exp(-4 * (x - c) / w))}[function]
    assert image.dtype == np.float32 and 0 < expected.mean() < 1
    np.testing.assert_allclose(image, expected, atol=2e-6)


@pytest.mark.parametrize("name", ["JPEG2000-embedded-sequence-delimiter.dcm", "JPEG-lossy.dcm",
                                  "meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm"])
def test_pixel_data_no_decoder_can_read_is_a_dicom_error_naming_the_file(name):
    """Files whose decoders fail (pydicom raises RuntimeError) or that lack an element needed to read the pixels
    (AttributeError): a DicomError naming the path, which prepare / predict report and skip, never a crash."""
    path = dicom_testfile(name)
    try:
        image, _ = read_dicom(path)
    except DicomError as err:
        assert str(err).startswith(f"{path}: ") and err.reason
    else:  # a newer decoder plugin may read it
        assert image.dtype == np.float32


def test_jpeg_lossless_decodes_with_extra():
    pytest.importorskip("libjpeg")
    image, meta = read_dicom(dicom_testfile("JPEG-LL.dcm"))
    assert image.shape == (1024, 256) and "Lossless" in meta["transfer_syntax"]
    assert image.max() > image.min()


def test_jpeg_lossless_without_plugin_fails_clearly(monkeypatch):
    path = dicom_testfile("JPEG-LL.dcm")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    decoder = pydicom.pixels.get_decoder(syntax)
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(MissingDecoderError) as err:
        read_dicom(path)
    message = str(err.value)
    assert "JPEG Lossless" in message and 'pip install "cxrgm[dicom]"' in message and path in message


def test_not_dicom(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"this is not a dicom file at all" * 10)
    with pytest.raises(NotDicomError, match="x.dcm"):
        read_dicom(path)


def test_non_image_object():
    with pytest.raises(NonImageDicomError, match="RT Plan"):
        read_dicom(dicom_testfile("rtplan.dcm"))


def test_image_without_pixel_data(tmp_path):
    with pytest.raises(NoPixelDataError):
        read_dicom(write_dicom(tmp_path / "np.dcm", with_pixels=False))
    with pytest.raises(NonImageDicomError):
        read_dicom(write_dicom(tmp_path / "plan.dcm", with_pixels=False, sop_class=RT_PLAN_STORAGE))


def test_truncated(tmp_path):
    full = write_dicom(tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(full[: len(full) - 500])
    with pytest.raises(TruncatedDicomError, match="cut.dcm"):
        read_dicom(cut)


def _cut_copy(tmp_path, name, size):
    """The first `size` bytes of pydicom's test file `name`, as a file in tmp_path."""
    cut = tmp_path / f"cut_{size}_{name}"
    with open(dicom_testfile(name), "rb") as handle:
        cut.write_bytes(handle.read(size))
    return cut


@pytest.mark.parametrize("name, size, where", [
    ("RG1_UNCI.dcm", 2000, "inside the header of a data element"),  # 6 bytes of an element's 8-byte header
    ("RG1_UNCI.dcm", 1990, "inside a data element that runs to byte 1994"),
    ("RG1_UNCI.dcm", 480, "inside a data element"),  # inside the SOP Class UID: "not an image: 1.2.840.10"
    ("RG1_UNCI.dcm", 2046, "inside a data element"),  # Pixel Data's header, none of its bytes: "empty Pixel Data"
    ("RG1_UNCI.dcm", 1135, "inside the header of a data element"),  # just after a sequence of undefined length
    ("RG1_UNCI.dcm", 152, "inside its file meta information"),  # pydicom's struct.error escaped read_dicom
    ("CT_small.dcm", 1000, "cut short"),
    ("MR_small.dcm", 1000, "cut short"),
])
def test_a_real_image_cut_inside_its_header_is_reported_as_cut_short(tmp_path, name, size, where):
    """pydicom reads a file cut inside its header without a word, stopping at its end: the first 2000 bytes of a CR
    were reported as "Computed Radiography Image Storage object without Pixel Data" (and, cut elsewhere, as an object
    that is no image, with empty pixel data, or with pydicom's struct.error, which no skipping caught). The reason
    names the file and its size, never a header value."""
    header = pydicom.dcmread(dicom_testfile(name), stop_before_pixels=True)
    cut = _cut_copy(tmp_path, name, size)
    with pytest.raises(TruncatedDicomError) as err:
        read_dicom(cut)
    message = str(err.value)
    assert message.startswith(f"{cut}: ") and "cut short" in message and where in message
    assert "without Pixel Data" not in message and "not an image" not in message
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "PatientName", "PatientID"):
        value = str(header.get(keyword) or "")
        assert len(value) < 3 or value not in message.split(": ", 1)[1]
    assert "1.2.840" not in message


def test_every_cut_of_a_real_header_is_a_dicom_error_and_cut_short_unless_it_falls_between_elements(tmp_path):
    """Each cut of MR_small.dcm's header and the start of its pixel data is a DicomError (pydicom's struct.error and
    BytesLengthException were not); one that splits an element is reported as cut short. A cut that falls exactly
    between two elements leaves a file that is complete as far as it goes: it keeps the reason of what it holds."""
    path = dicom_testfile("MR_small.dcm")
    data = Path(path).read_bytes()
    header = pydicom.dcmread(path, stop_before_pixels=True)
    boundaries = {header.get_item(tag, keep_deferred=True).value_tell + header.get_item(tag, keep_deferred=True).length
                  for tag in header.keys()}
    cut = tmp_path / "cut.dcm"
    for size in range(132, 1600):
        cut.write_bytes(data[:size])
        with pytest.raises(DicomError) as err:
            read_dicom(cut)
        if size not in boundaries:
            assert isinstance(err.value, TruncatedDicomError), (size, str(err.value))


def test_a_complete_real_image_without_pixel_data_keeps_its_reason(tmp_path):
    """Whole files are not taken for cut ones: a CT saved without its pixel data is an image object without Pixel
    Data; the RT plan, complete, is no image."""
    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "ct.dcm")
    with pytest.raises(NoPixelDataError, match=r"ct\.dcm: CT Image Storage object without Pixel Data"):
        read_dicom(tmp_path / "ct.dcm")
    with pytest.raises(NonImageDicomError, match="not an image: RT Plan Storage"):
        read_dicom(dicom_testfile("rtplan.dcm"))


def test_malformed_value_is_not_quoted_in_the_error():
    """badVR.dcm has a pixel-description element that is not a number ('1A'): the error says so without it."""
    path = dicom_testfile("badVR.dcm")
    with pytest.raises(TruncatedDicomError) as err:
        read_dicom(path)
    assert "invalid literal" in str(err.value) and "1A" not in str(err.value)


def test_multiframe_takes_first_frame():
    with pytest.warns(UserWarning, match="frames, using frame 0"):
        image, meta = read_dicom(dicom_testfile("emri_small.dcm"))
    assert image.shape == (64, 64) and meta["number_of_frames"] == 10


def test_voi_lut_sequence():
    image, _ = read_dicom(dicom_testfile("vlut_04.dcm"))
    assert image.dtype == np.float32 and 0 <= image.min() < image.max() <= 1


def _with_lut(path, sequence: str, descriptor, data, vr: str = "US"):
    """The DICOM at `path` given a one-item Modality or VOI LUT sequence; its path."""
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item["LUTDescriptor"] = pydicom.DataElement(0x00283002, "US", descriptor)
    item["LUTData"] = pydicom.DataElement(0x00283006, vr, data)
    if sequence == "ModalityLUTSequence":
        item.ModalityLUTType = "US"
    setattr(ds, sequence, pydicom.Sequence([item]))
    ds.save_as(path)
    return path


def test_lookup_tables_as_the_standard_stores_them(tmp_path):
    """LUT Data as OW bytes (what Implicit VR Little Endian, the default transfer syntax, reads) was refused as
    undecodable; 8-bit entries of a LUT over 12-bit values wrapped the inputs at 256; 8-bit Modality LUT entries packed
    one per byte crashed on a struct error that named no file; a VOI LUT Function with leading spaces fell back to
    LINEAR."""
    from pydicom.uid import ImplicitVRLittleEndian

    source = dicom_testfile("vlut_04.dcm")
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(tmp_path / "implicit.dcm", enforce_file_format=True)
    assert isinstance(pydicom.dcmread(tmp_path / "implicit.dcm").VOILUTSequence[0].LUTData, bytes)
    np.testing.assert_array_equal(read_dicom(tmp_path / "implicit.dcm")[0], read_dicom(source)[0])

    pixels = np.array([[0, 255, 256, 1024, 2048, 4095]], dtype=np.uint16)
    ramp = np.arange(4096) * 255 // 4095
    path = _with_lut(write_dicom(tmp_path / "eight.dcm", pixels), "VOILUTSequence", [4096, 0, 8], ramp.tolist())
    np.testing.assert_allclose(read_dicom(path)[0], ramp[pixels] / 255, atol=1e-6)

    pixels = (np.arange(16).reshape(4, 4) * 16).astype(np.uint16)
    table = (255 - np.arange(256)).astype(np.uint8)
    path = _with_lut(write_dicom(tmp_path / "packed.dcm", pixels, bits_stored=8), "ModalityLUTSequence",
                     [256, 0, 8], table.tobytes(), vr="OW")
    looked_up = table[pixels].astype(np.float64)
    np.testing.assert_allclose(read_dicom(path, voi="full")[0], (looked_up - looked_up.min()) / np.ptp(looked_up),
                               atol=1e-6)

    colour = dicom_testfile("SC_rgb.dcm")  # a VOI LUT is for grey images: a colour image's luminance is not mapped
    pydicom.dcmread(colour).save_as(tmp_path / "colour.dcm")
    _with_lut(tmp_path / "colour.dcm", "VOILUTSequence", [256, 0, 8], list(range(255, -1, -1)))
    np.testing.assert_array_equal(read_dicom(tmp_path / "colour.dcm")[0], read_dicom(colour)[0])

    pixels = np.array([[0, 1000, 2000, 3000, 4095]], dtype=np.uint16)
    ds = pydicom.dcmread(write_dicom(tmp_path / "sigmoid.dcm", pixels, window=(2000, 1000)))
    ds.VOILUTFunction = "  SIGMOID"
    ds.save_as(tmp_path / "sigmoid.dcm")
    np.testing.assert_allclose(read_dicom(tmp_path / "sigmoid.dcm")[0], 1 / (1 + np.exp(-4 * (pixels - 2000.0) / 1000)),
                               atol=1e-5)


def test_a_voi_lut_applies_after_a_rescale(tmp_path):
    """The VOI LUT maps the modality values: with the identity rescale most CR/DX headers carry (slope 1, intercept
    0) the read is the one without it, where the LUT was left out for the image's full range once the rescale made
    the values floats; with slope 2 the LUT takes twice the stored value."""
    ds = pydicom.dcmread(dicom_testfile("vlut_04.dcm"))
    entries = len(ds.VOILUTSequence[0].LUTData)
    ds.VOILUTSequence[0].LUTData = [round(65535 * (i / (entries - 1)) ** 0.5) for i in range(entries)]  # not linear
    first_mapped = int(ds.VOILUTSequence[0].LUTDescriptor[1])
    ds.save_as(tmp_path / "lut.dcm")
    expected = np.sqrt(np.clip(ds.pixel_array.astype(np.float64) - first_mapped, 0, entries - 1) / (entries - 1))
    without, _ = read_dicom(tmp_path / "lut.dcm")
    np.testing.assert_allclose(without, expected, atol=1e-5)
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.save_as(tmp_path / "identity.dcm")
    np.testing.assert_array_equal(read_dicom(tmp_path / "identity.dcm")[0], without)
    ds.RescaleSlope = 2
    ds.save_as(tmp_path / "doubled.dcm")
    doubled = np.sqrt(np.clip(2.0 * ds.pixel_array - first_mapped, 0, entries - 1) / (entries - 1))
    np.testing.assert_allclose(read_dicom(tmp_path / "doubled.dcm")[0], doubled, atol=1e-5)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("voi", ["full", "percentiles", "header"])
def test_pixel_padding_is_left_out_of_the_window_and_black(tmp_path, voi, photometric):
    """A CR whose detector area is framed by padding (values 4090-4095: Pixel Padding Value and Range Limit, given
    in either order): the window is the image's own range, and the padding comes out black whatever the polarity."""
    pixels = np.random.default_rng(2).integers(1000, 3001, (40, 30)).astype(np.uint16)
    pixels[10, 10], pixels[-1, -1] = 1000, 3000  # the image's own range, exactly
    pixels[:5], pixels[:, :4] = 4093, 4095
    path = write_dicom(tmp_path / "pad.dcm", pixels, photometric=photometric)
    ds = pydicom.dcmread(path)
    ds.add_new("PixelPaddingValue", "US", 4095)
    ds.add_new("PixelPaddingRangeLimit", "US", 4090)
    ds.save_as(path)
    image, _ = read_dicom(path, voi=voi, percentiles=(0, 100))
    inside = (pixels[5:, 4:].astype(np.float64) - 1000) / 2000
    expected = 1 - inside if photometric == "MONOCHROME1" else inside
    np.testing.assert_allclose(image[:5], 0.0)
    np.testing.assert_allclose(image[:, :4], 0.0)
    np.testing.assert_allclose(image[5:, 4:], expected, atol=1e-6)


def test_palette_colour_goes_through_its_colour_table(tmp_path):
    """PALETTE COLOR stores indices into a colour table: the grey image is the table's colours' luminance."""
    path = dicom_testfile("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    rgb = pydicom.pixels.apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    luminance = rgb @ [0.299, 0.587, 0.114]
    expected = (luminance - luminance.min()) / (luminance.max() - luminance.min())
    image, _ = read_dicom(path)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    # 12-bit indices into 4096-entry tables of 8-bit colours, one byte each: pydicom's lookup wrapped them at 256
    indices = np.array([[0, 255, 256, 1024, 2048, 4095]], dtype=np.uint16)
    ramp = (np.arange(4096) * 255 // 4095).astype(np.uint8)
    ds = pydicom.dcmread(write_dicom(tmp_path / "palette.dcm", indices))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for tag in (0x00281101, 0x00281102, 0x00281103):  # red, green, blue: descriptor, then (tag + 0x100) data
        ds[tag] = pydicom.DataElement(tag, "US", [4096, 0, 8])
        ds[tag + 0x100] = pydicom.DataElement(tag + 0x100, "OW", ramp.tobytes())
    ds.save_as(tmp_path / "palette.dcm")
    np.testing.assert_allclose(read_dicom(tmp_path / "palette.dcm")[0], ramp[indices] / 255, atol=1e-6)


def test_invalid_header_values_are_not_quoted_in_warnings_or_logs(tmp_path, caplog):
    """pydicom warns and logs an invalid value with the value itself (a malformed UID or name): reading a file, and
    building a set over such files, say nothing of them; the caller's pydicom setting is left as it was."""
    from hf_datasets import build_dataset

    path = write_dicom(tmp_path / "set" / "bad.dcm")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "1.2.SECRET-STUDY.9"
        ds.PatientID = "SECRET-ID" * 10
        ds.ViewPosition = "SECRET-VIEW-" * 3
        ds.save_as(path)
    before = pydicom.config.settings.reading_validation_mode
    caplog.clear()  # writing the file logged the values
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("DEBUG"):
        warnings.simplefilter("always")
        _, meta = read_dicom(path)
        build_dataset("dicomdir", tmp_path / "set")
    said = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [text for text in said if "SECRET" in text]
    assert meta["study_uid_hash"] and pydicom.config.settings.reading_validation_mode == before


@pytest.mark.parametrize("keyword, vr", [("WindowCenter", "DS"), ("WindowWidth", "DS"), ("RescaleSlope", "DS"),
                                         ("RescaleIntercept", "DS"), ("VOILUTSequence", "SQ"),
                                         ("PixelPaddingValue", "US"), ("PixelPaddingRangeLimit", "US")])
def test_an_empty_optional_element_is_read_as_absent(tmp_path, keyword, vr):
    """Exporters and de-identification tools leave optional elements present but empty (zero length): such a file
    reads as if the element were not there, instead of failing on the missing value."""
    path = write_dicom(tmp_path / "empty.dcm", window=(2000, 3000))
    ds = pydicom.dcmread(path)
    if keyword.startswith("Rescale"):
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-10"
    if keyword == "PixelPaddingRangeLimit":
        ds.add_new("PixelPaddingValue", "US", 4000)
    if keyword in ds:
        del ds[keyword]
    without = tmp_path / "without.dcm"
    ds.save_as(without)
    ds.add_new(keyword, vr, [] if vr == "SQ" else None)
    ds.save_as(path)
    image, _ = read_dicom(path)
    np.testing.assert_array_equal(image, read_dicom(without)[0])


def test_empty_pixel_data_is_reported_as_missing_pixel_data(tmp_path):
    """A Pixel Data element of length zero (an export that dropped the pixels) is refused as an image without
    pixel data, naming the file, not with a TypeError from inside pydicom; preparation lists it as skipped."""
    from hf_datasets.prepare import prepare

    path = write_dicom(tmp_path / "set" / "hollow.dcm")
    ds = pydicom.dcmread(path)
    ds.PixelData = b""
    ds.save_as(path)
    write_dicom(tmp_path / "set" / "good.dcm", patient_id="PAT-002")
    with pytest.raises(NoPixelDataError, match="hollow.dcm.*empty Pixel Data"):
        read_dicom(path)
    report = prepare("dicomdir", tmp_path / "set", tmp_path / "out", size=16, progress=False)
    assert report["written"] == 1
    assert [(e["path"], e["error"]) for e in report["skipped_files"]] == [("hollow.dcm", "NoPixelDataError")]


def _without_lut_data(ds):
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 16]
    ds.VOILUTSequence = pydicom.Sequence([item])


def _modality_lut_without_descriptor(ds):
    ds.ModalityLUTSequence = pydicom.Sequence([pydicom.Dataset()])


def _palette_without_tables(ds):
    ds.PhotometricInterpretation = "PALETTE COLOR"


@pytest.mark.parametrize("damage", [_without_lut_data, _modality_lut_without_descriptor, _palette_without_tables])
def test_a_malformed_lookup_table_is_a_dicom_error_naming_the_file(tmp_path, damage):
    """A VOI LUT item without its data, a Modality LUT item without its descriptor or PALETTE COLOR without a colour
    table: the file is refused as undecodable, naming it, so building a set or predicting can skip it (pydicom's
    AttributeError or ValueError stopped them)."""
    from hf_datasets import build_dataset

    path = write_dicom(tmp_path / "set" / "broken.dcm")
    ds = pydicom.dcmread(path)
    damage(ds)
    ds.save_as(path)
    write_dicom(tmp_path / "set" / "good.dcm", patient_id="PAT-002")
    with pytest.raises(DicomError, match="broken.dcm"):
        read_dicom(path)
    with pytest.warns(UserWarning, match="skipped .*broken.dcm"):
        built = build_dataset("dicomdir", tmp_path / "set", on_error="skip", split_fractions={"train": 1.0},
                              cache_dir=str(tmp_path / "cache"))
    assert built["train"]["path"] == ["good.dcm"]


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.102", "1.2.840.113619.5.2"])
def test_a_transfer_syntax_no_decoder_exists_for_is_a_dicom_error_naming_it(tmp_path, syntax):
    """An MPEG-4 video or a vendor's private transfer syntax among the radiographs: refused naming the file and the
    transfer syntax, so a folder holding one can be built or predicted with skipping (pydicom's NotImplementedError
    or ValueError stopped it)."""
    path = write_dicom(tmp_path / "video.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    if not ds.file_meta.TransferSyntaxUID.is_private:  # a public, compressed one: its frames come encapsulated
        ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(path)
    with pytest.raises(DicomError, match=rf"video.dcm: transfer syntax .*\({syntax}\) is not supported"):
        read_dicom(path)


def test_float_pixel_data_with_nan_is_refused_naming_the_file(tmp_path):
    """One NaN in float pixel data made the whole image NaN (and a training loss NaN) without a word."""
    from hf_datasets.errors import UndecodableDicomError

    path = write_dicom(tmp_path / "float.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    pixels = np.linspace(0, 1, ds.Rows * ds.Columns, dtype=np.float32).reshape(ds.Rows, ds.Columns)
    ds.FloatPixelData = pixels.tobytes()
    ds.save_as(path)
    image, _ = read_dicom(path)
    assert np.isfinite(image).all() and image.max() > image.min()
    pixels[3, 4] = np.nan
    ds.FloatPixelData = pixels.tobytes()
    ds.save_as(path)
    with pytest.raises(UndecodableDicomError, match=r"float\.dcm: float pixel data holds NaN"):
        read_dicom(path)


def test_a_file_cut_inside_an_undefined_length_element_is_reported_as_cut(recwarn):
    """pydicom reads such a file as an empty data set, which was reported as "not an image: object with an unknown
    SOP class" although its file meta names an image class."""
    path = dicom_testfile("emri_small_jpeg_2k_lossless_too_short.dcm")
    with pytest.raises(TruncatedDicomError, match=r"too_short\.dcm: Enhanced MR Image Storage file whose data set "
                                                  r"ends early"):
        read_dicom(path)
