"""Read a DICOM radiograph into a float32 array in [0, 1] plus PHI-free metadata.

Order (SPEC §3): reject non-image objects, decode, modality LUT, VOI, invert
MONOCHROME1, scale to [0, 1]. Pixel padding (the area outside the detector that
Pixel Padding Value marks) is left out of the full-range and percentile windows and
comes out black. Only allow-listed header fields are returned; identifiers are
returned as salted sha256 hashes, never as values, and pydicom's checks of header
values (whose messages quote them) are silenced while a file is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import warnings

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import read_file_meta_info, read_sequence
from pydicom import config as pydicom_config
from pydicom.pixels import apply_color_lut, get_decoder

from .errors import (
    InvalidInputError,
    MissingDecoderError,
    NoPixelDataError,
    NonImageDicomError,
    NotDicomError,
    TruncatedDicomError,
    UndecodableDicomError,
)

VOI_MODES = ("header", "full", "percentiles")
# Media Storage Directory Storage: a DICOMDIR, the index of the files of a DICOM media export (CD, USB, PACS export)
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
RADIOGRAPH_MODALITIES = ("CR", "DX")  # computed and digital radiography: the modalities of chest X-rays
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float and Double Float Pixel Data
# Explicit VRs whose element header is 12 bytes (a 4-byte length after 2 reserved bytes); the others' is 8
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_DEFLATED = "1.2.840.10008.1.2.1.99"  # its data set is compressed: file positions are not those of its elements
_UNDEFINED_LENGTH = 0xFFFFFFFF
_UNKNOWN = -1  # what follows the elements read cannot be told
VIEW_ALIASES = {
    "PA": "PA", "POSTERO_ANTERIOR": "PA", "POSTEROANTERIOR": "PA",
    "AP": "AP", "ANTERO_POSTERIOR": "AP", "ANTEROPOSTERIOR": "AP",
    "LL": "LL", "LEFT_LATERAL": "LL", "RL": "RL", "RIGHT_LATERAL": "RL",
    "LAT": "LATERAL", "LATERAL": "LATERAL", "L": "LATERAL",
    "LAO": "LAO", "RAO": "RAO", "LPO": "LPO", "RPO": "RPO",
}
_HASHED_UIDS = {"patient_id_hash": "PatientID", "study_uid_hash": "StudyInstanceUID",
                "series_uid_hash": "SeriesInstanceUID", "sop_uid_hash": "SOPInstanceUID"}


def hash_identifier(value, salt: str | None = None) -> str | None:
    """Return the first 16 hex digits of sha256(salt + value), or None for no value.

    The spaces around a value are no part of it (DICOM pads LO values with leading or trailing spaces: "  00003"
    from one export is "00003" from another). The salt defaults to the CXRGM_HASH_SALT environment variable (empty
    if unset).
    """
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    salt = os.environ.get("CXRGM_HASH_SALT", "") if salt is None else salt
    return hashlib.sha256(f"{salt}{text}".encode()).hexdigest()[:16]


def normalise_view(value) -> str | None:
    """Map a ViewPosition-like string to PA / AP / LL / RL / LATERAL / ...; None if unknown."""
    if value is None:
        return None
    key = str(value).strip().upper().replace("-", "_").replace(" ", "_")
    if not key:
        return None
    if key in VIEW_ALIASES:
        return VIEW_ALIASES[key]
    for prefix in ("PA", "AP"):
        if key.startswith(prefix + "_"):
            return prefix
    return key


LATERAL_VIEWS = frozenset({"LATERAL", "LL", "RL"})


def wanted_views(views) -> frozenset[str] | None:
    """The normalised views a `views` option keeps (None = any); asking for LATERAL keeps LL and RL too."""
    if views is None:
        return None
    wanted = {normalise_view(view) for view in views} - {None}
    if "LATERAL" in wanted:
        wanted |= LATERAL_VIEWS
    return frozenset(wanted)


def _spacing_mm(ds) -> list[float] | None:
    """Row/column spacing in mm: ImagerPixelSpacing preferred; values <= 0 mean unknown."""
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            spacing = [float(v) for v in value]
        except (TypeError, ValueError):
            continue
        if len(spacing) == 2 and all(v > 0 for v in spacing):
            return spacing
    return None


def dicom_metadata(ds) -> dict:
    """The allow-listed, PHI-free metadata of a dataset (view, spacing, bits, size, hashed UIDs)."""
    meta = {
        "view": normalise_view(ds.get("ViewPosition")),
        "pixel_spacing_mm": _spacing_mm(ds),
        "modality": ds.get("Modality"),
        "photometric_interpretation": ds.get("PhotometricInterpretation"),
        "bits_allocated": ds.get("BitsAllocated"),
        "bits_stored": ds.get("BitsStored"),
        "rows": ds.get("Rows"),
        "columns": ds.get("Columns"),
        "number_of_frames": int(ds.get("NumberOfFrames") or 1),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID.name)
        if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else None,
    }
    for key, keyword in _HASHED_UIDS.items():
        meta[key] = hash_identifier(ds.get(keyword))
    return meta


def _has(ds, keyword) -> bool:
    """Whether the header holds `keyword` with a value: an element present but empty (zero length, as some
    exporters and de-identification tools leave optional ones) counts as absent."""
    return keyword in ds and not ds[keyword].is_empty


def _open(path):
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise NotDicomError(path, "not a DICOM file (no 'DICM' marker or unreadable header)") from err
    except (EOFError, OSError, ValueError, KeyError, IndexError, struct.error, BytesLengthException) as err:
        size = os.path.getsize(path)
        if size == 0:
            raise NotDicomError(path, "empty file") from err
        meta_end = _meta_end(path)
        if size < meta_end:
            where = f"inside its file meta information, which runs to byte {meta_end}"
        elif isinstance(err, (EOFError, struct.error)) or (type(err) is OSError and err.errno is None):
            where = "inside a data element"  # pydicom ran out of bytes (its OSError: no item tag left to read)
        else:
            raise TruncatedDicomError(path, f"header cannot be parsed ({type(err).__name__})") from err
        raise TruncatedDicomError(path, f"header cannot be parsed: the file is cut short (it ends at byte {size}, "
                                        f"{where})") from err


def _meta_end(path) -> int:
    """The file position the file meta information ends at, by its group length; 144 (the end of the group length
    element, which opens it after the preamble and 'DICM') when the file ends before that length is given, and 0
    when the file meta does not open with it."""
    with open(path, "rb") as handle:
        handle.seek(132)
        head = handle.read(12)
    if len(head) < 12:
        return 144
    if head[:8] != b"\x02\x00\x00\x00UL\x04\x00":
        return 0
    return 144 + struct.unpack("<L", head[8:])[0]


def _element_at(path, position: int, implicit: bool, little: bool) -> tuple[int, int | None] | None:
    """(tag, the file position its declared length ends at, None for an undefined length) of the data element whose
    header starts at `position`; None when the file ends inside that header."""
    with open(path, "rb") as handle:
        handle.seek(position)
        head = handle.read(12)
    order = "<" if little else ">"
    if len(head) < 8:
        return None
    group, element = struct.unpack(order + "HH", head[:4])
    if implicit:
        size, length = 8, struct.unpack(order + "L", head[4:8])[0]
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return None
        size, length = 12, struct.unpack(order + "L", head[8:12])[0]
    else:
        size, length = 8, struct.unpack(order + "H", head[6:8])[0]
    return (group << 16) | element, None if length == _UNDEFINED_LENGTH else position + size + length


def _encoding(ds) -> tuple[bool, bool]:
    """(implicit VR, little endian) as the data set was read: as its elements were, which pydicom reads as implicit
    VR when the file says explicit but holds implicit; else as the file says."""
    for tag in ds.keys():
        element = ds.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement):
            return bool(element.is_implicit_VR), bool(element.is_little_endian)
    implicit, little = ds.original_encoding
    return bool(implicit), little is not False


def _read_end(path, ds) -> int | None:
    """The file position that the last top-level element read ends at; None when unknown (a value already
    converted, or an undefined length other than a sequence's)."""
    if not len(ds):
        return None
    last = ds.get_item(max(ds.keys()), keep_deferred=True)
    if isinstance(last, RawDataElement):
        if last.value_tell is None or last.length == _UNDEFINED_LENGTH:
            return None
        return last.value_tell + last.length
    if last.VR != "SQ" or not last.is_undefined_length or last.file_tell is None:
        return None
    try:  # a sequence ends at its delimiter: read past its items once more
        with open(path, "rb") as handle:
            handle.seek(last.file_tell)
            read_sequence(handle, *_encoding(ds), _UNDEFINED_LENGTH, ds.original_character_set)
            return handle.tell()
    except Exception:  # noqa: BLE001 - pydicom read it once; if it cannot again, the end is unknown
        return None


def _cut_short(path, ds, before_pixels: bool = False) -> tuple[str | None, int | None]:
    """Why the file `ds` was read from is evidently cut short (None if there is no sign of it), and the tag of the
    element after those read (None at the end of the file, _UNKNOWN when that cannot be told).

    pydicom reads a truncated file without a word: it stops at the end, keeping a last element shorter than its
    declared length, or leaves out an element it cannot finish. The file meta's group length, the data set's last
    element's declared length and the bytes left after it tell. With `before_pixels` the data set was read up to its
    pixel data (stop_before_pixels): the pixel data element there is checked by its declared length alone. Only the
    file's size and element positions go into the reason, never a value."""
    size, meta_end = os.path.getsize(path), _meta_end(path)
    if size < meta_end:
        return f"it ends at byte {size}, inside its file meta information, which runs to byte {meta_end}", None
    meta = getattr(ds, "file_meta", None)
    if not len(ds):
        return f"it ends at byte {size}, before its data set does: no element of it can be read", None
    if meta is not None and meta.get("TransferSyntaxUID") == _DEFLATED:
        return None, _UNKNOWN
    end = _read_end(path, ds)
    if end is None:
        return None, _UNKNOWN
    if end > size:
        return f"it ends at byte {size}, inside a data element that runs to byte {end}", None
    if end == size:
        return None, None
    following = _element_at(path, end, *_encoding(ds))
    if following is None:
        return f"it ends at byte {size}, inside the header of a data element", None
    tag, following_end = following
    if before_pixels and tag in _PIXEL_TAGS:
        if following_end is not None and following_end > size:
            return f"it ends at byte {size}, inside its pixel data (which runs to byte {following_end})", tag
        return None, tag
    return f"its data set stops at byte {end} of {size}: the rest cannot be read as data elements", tag


def read_header(path):
    """The header of a DICOM file, read up to its pixel data (which is not read), and whether the file holds a whole
    image: a header with no sign of being cut short, followed by a pixel data element that the file holds to its
    declared length (one of undefined length, encapsulated frames, is checked only when decoded). An unreadable
    header is an empty Dataset, and no whole image. Call it inside quiet_value_checks(), as the header's values are
    read: pydicom's checks of them quote them."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        cut, following = _cut_short(path, ds, before_pixels=True)
    except Exception:  # noqa: BLE001 - the file is reported when its pixels are read
        return pydicom.Dataset(), False
    return ds, cut is None and (following in _PIXEL_TAGS or following == _UNKNOWN)


def _class_name(uid) -> str:
    """The name of a SOP class UID pydicom knows, else "" (a UID cut short is no name)."""
    name = getattr(uid, "name", "") if uid is not None else ""
    return "" if name == str(uid) else name


def _check_is_image(path, ds) -> None:
    cut, _ = _cut_short(path, ds)  # first: it needs the elements as read, before any value is converted
    if any(_has(ds, k) for k in PIXEL_KEYWORDS):
        return  # pixel data cut short is reported when decoded
    sop_class = ds.get("SOPClassUID")
    stated = _class_name(ds.file_meta.get("MediaStorageSOPClassUID"))
    if cut is not None:
        kind = _class_name(sop_class) or stated or "DICOM"
        raise TruncatedDicomError(path, f"{kind} file whose data set ends early: the file is cut short ({cut})")
    sop_name = getattr(sop_class, "name", "") if sop_class is not None else ""
    if any(k in ds for k in PIXEL_KEYWORDS):
        raise NoPixelDataError(path, f"{sop_name or 'image'} object with empty Pixel Data")
    if "Image" in sop_name:
        raise NoPixelDataError(path, f"{sop_name} object without Pixel Data")
    if sop_class is None and "Image" in stated:  # the file meta says image, the data set lost even its SOP class
        raise TruncatedDicomError(path, f"{stated} file whose data set ends early (file cut short?)")
    if ds.file_meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY_SOP_CLASS:
        raise NonImageDicomError(path, "not an image: a DICOMDIR (the index of a DICOM export's files); pass the "
                                       "folder that holds it, whose images are read and whose DICOMDIR is left out")
    kind = sop_name or "object with an unknown SOP class"
    raise NonImageDicomError(path, f"not an image: {kind}")


def _decode(path, ds) -> np.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID if "TransferSyntaxUID" in ds.file_meta else None
    try:  # pydicom knows no decoder for video (MPEG, HEVC) or private transfer syntaxes
        decoder = get_decoder(syntax) if syntax is not None and syntax.is_encapsulated else None
    except (NotImplementedError, ValueError) as err:
        raise UndecodableDicomError(path, f"transfer syntax '{syntax.name}' ({syntax}) is not supported: "
                                          "no decoder exists for it") from err
    if decoder is not None and not decoder.is_available:
        raise MissingDecoderError(
            path, f"transfer syntax '{syntax.name}' ({syntax}) needs a decoder plugin: "
                  'pip install "cxrgm[dicom]"')
    try:
        return ds.pixel_array
    except (ValueError, EOFError) as err:  # pydicom's text may quote a malformed value: that part is left out
        reason = re.sub(r"'[^']*'", "'...'", str(err))
        raise TruncatedDicomError(path, f"pixel data incomplete or undecodable ({reason})") from err
    except (RuntimeError, NotImplementedError) as err:  # every installed decoder plugin failed, each says why
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reasons = "; ".join(lines[1:]) or lines[0] if lines else type(err).__name__
        raise UndecodableDicomError(path, f"pixel data cannot be decoded ({reasons})") from err
    except AttributeError as err:  # e.g. no Transfer Syntax UID or Bits Allocated: element names, never values
        raise UndecodableDicomError(path, f"pixel data cannot be read ({err})") from err


def _modality_values(ds, pixels: np.ndarray) -> np.ndarray:
    """Stored grey values -> modality values: the Modality LUT's integers, or float32 after rescale slope and
    intercept (computed in float32, in place: a full-size radiograph is tens of megabytes per pass)."""
    if _has(ds, "ModalityLUTSequence"):
        item = ds.ModalityLUTSequence[0]
        signed = ds.get("PixelRepresentation") == 1
        return _looked_up(pixels, *_lut_table(ds, item.LUTDescriptor, item.LUTData, signed))
    if not (_has(ds, "RescaleSlope") and _has(ds, "RescaleIntercept")):
        return pixels
    values = pixels.astype(np.float32)
    values *= float(ds.RescaleSlope)
    values += float(ds.RescaleIntercept)
    return values


def _scale_in_place(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(values - low) / (high - low), clipped to [0, 1], overwriting `values` (float32)."""
    values -= low
    values *= 1.0 / max(high - low, 1e-12)
    return np.clip(values, 0.0, 1.0, out=values)


def _padding(ds, pixels: np.ndarray) -> np.ndarray | None:
    """Boolean (rows, cols) of the pixels that Pixel Padding Value (up to Pixel Padding Range Limit, either order)
    marks as outside the image, in stored values; None when the header marks none or every pixel."""
    if not _has(ds, "PixelPaddingValue") or pixels.ndim != 2:
        return None
    first = int(ds.PixelPaddingValue)
    last = int(ds.PixelPaddingRangeLimit) if _has(ds, "PixelPaddingRangeLimit") else first
    low, high = min(first, last), max(first, last)
    padding = (pixels >= low) & (pixels <= high)
    return padding if padding.any() and not padding.all() else None


def _apply_voi(ds, values: np.ndarray, voi: str, percentiles, padding: np.ndarray | None = None,
               grey: bool = True) -> np.ndarray:
    """Window `values` (after modality LUT) to float32 in [0, 1] by header VOI, full range or percentiles;
    the full range and the percentiles are those of the pixels outside `padding` (boolean, True = padding). A VOI
    LUT applies to `grey` pixels only (MONOCHROME1/2, PS3.3 C.11.2), not to a colour image's luminance."""
    if voi == "header" and grey and _has(ds, "VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        first, table = _lut_table(ds, item.LUTDescriptor, item.LUTData, signed=bool(values.min(initial=0) < 0))
        return _scale_in_place(_looked_up(values, first, table), float(table.min()), float(table.max()))
    values = values.astype(np.float32, copy=False)  # a copy unless _modality_values made it float32
    if voi == "header" and _has(ds, "WindowCenter") and _has(ds, "WindowWidth"):
        center = float(_first(ds.WindowCenter))
        width = max(float(_first(ds.WindowWidth)), 1.0)
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        if function == "SIGMOID":
            values -= center
            values *= -4.0 / width
            np.exp(values, out=values)
            values += 1.0
            return np.reciprocal(values, out=values)
        if function == "LINEAR_EXACT":
            return _scale_in_place(values, center - width / 2, center + width / 2)
        # DICOM PS3.3 C.11.2.1.2.1: (x - (c - 0.5)) / (w - 1) + 0.5, i.e. c - 0.5 -/+ (w - 1) / 2 map to 0 and 1
        half = max(width - 1.0, 1.0) / 2
        return _scale_in_place(values, center - 0.5 - half, center - 0.5 + half)
    image_values = values if padding is None else values[~padding]
    if voi == "percentiles":
        low, high = np.percentile(image_values, percentiles)
    else:
        low, high = float(image_values.min()), float(image_values.max())
    return _scale_in_place(values, float(low), float(high))


def _lut_table(ds, descriptor, data, signed: bool) -> tuple[int, np.ndarray]:
    """(first value mapped, entries float32) of a Modality, VOI or palette colour LUT, from its descriptor and data,
    decoded here (PS3.3 C.11.1.1.1, C.11.2.1.1, C.7.6.3.1.5): data as US values or OW bytes (as Implicit VR reads
    it), 8-bit entries one per word or one per byte, 0 entries for 65536, and the first value mapped read as signed
    when the values it maps can be negative. pydicom's own lookups index in the entries' type, which wraps inputs
    above 255 for 8-bit entries, and refuse 8-bit entries packed one per byte."""
    count, first, bits = (int(v) for v in descriptor)
    count = count or 65536
    if signed and first >= 32768:
        first -= 65536
    if isinstance(data, bytes):
        order = "<" if ds.original_encoding[1] in (True, None) else ">"
        entries = np.frombuffer(data, dtype=np.uint8 if bits <= 8 and len(data) < 2 * count else f"{order}u2")
    else:
        entries = np.atleast_1d(np.asarray(data, dtype=np.int64))
    if len(entries) < count:
        raise ValueError(f"a lookup table holds {len(entries)} entries of the {count} its descriptor states")
    return first, entries[:count].astype(np.float32)


def _palette_colours(ds, pixels: np.ndarray) -> np.ndarray:
    """PALETTE COLOR indices (rows, cols) -> (rows, cols, 3) red, green and blue through the file's colour tables
    (segmented tables through pydicom's)."""
    if "SegmentedRedPaletteColorLookupTableData" in ds:
        return apply_color_lut(pixels, ds)
    channels = [_looked_up(pixels, *_lut_table(ds, ds[f"{colour}PaletteColorLookupTableDescriptor"].value,
                                               ds[f"{colour}PaletteColorLookupTableData"].value, signed=False))
                for colour in ("Red", "Green", "Blue")]
    return np.stack(channels, axis=-1)


def _looked_up(values: np.ndarray, first: int, table: np.ndarray) -> np.ndarray:
    """`table`'s entry for each of `values` (rounded: after a rescale a LUT still maps whole values), float32; values
    before the first mapped one take the first entry, those past the last the last (PS3.3 C.11.2.1.1)."""
    whole = np.rint(values) if values.dtype.kind == "f" else values
    return table[np.clip(whole.astype(np.int64, copy=False) - first, 0, len(table) - 1)]


def _first(value):
    return value[0] if isinstance(value, pydicom.multival.MultiValue) else value


def read_dicom(path, *, voi: str = "header", percentiles=(0.5, 99.5)):
    """Read a grey DICOM radiograph.

    Args:
        path: file path.
        voi: "header" (VOI LUT sequence, else window centre/width, else full range),
            "full" (min-max of the image) or "percentiles" (clip to `percentiles`).
    Returns:
        (image, metadata): float32 array (rows, cols) in [0, 1], 0 = black / 1 = white
        (MONOCHROME1 is inverted, pixel padding is 0, PALETTE COLOR goes through its colour
        table to luminance), and the allow-listed metadata dict.
    Raises:
        NotDicomError, NonImageDicomError, NoPixelDataError, TruncatedDicomError,
        MissingDecoderError, UndecodableDicomError (all subclasses of DicomError).
    """
    if voi not in VOI_MODES:
        raise InvalidInputError(f"voi must be one of {VOI_MODES}, got {voi!r}")
    with quiet_value_checks():
        ds = _open(path)
        _check_is_image(path, ds)
        pixels = _decode(path, ds)
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            warnings.warn(f"{path}: {frames} frames, using frame 0", stacklevel=2)
            pixels = pixels[0]
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        try:
            if photometric == "PALETTE COLOR":
                pixels = _palette_colours(ds, pixels)
            padding = _padding(ds, pixels)
            if pixels.ndim == 3:
                values = pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            else:
                values = _modality_values(ds, pixels)
            if pixels.dtype.kind == "f" and not np.isfinite(values).all():  # float pixel data: one NaN greys all
                raise UndecodableDicomError(path, "float pixel data holds NaN or infinite values")
            image = _apply_voi(ds, values, voi, percentiles, padding, grey=pixels.ndim == 2)
        except AttributeError as err:  # a lookup table without an element it needs: names it, never a value
            raise UndecodableDicomError(path, f"pixel values cannot be mapped to grey ({err})") from err
        except (ValueError, TypeError, KeyError, IndexError) as err:  # the text may quote a value: left out
            reason = re.sub(r"'[^']*'", "'...'", str(err))
            raise UndecodableDicomError(path, f"pixel values cannot be mapped to grey ({reason})") from err
        if photometric == "MONOCHROME1":
            np.subtract(1.0, image, out=image)
        if padding is not None:
            image[padding] = 0.0
        return image, dicom_metadata(ds)


@contextlib.contextmanager
def quiet_value_checks():
    """Turn off pydicom's validation of header values while a file is read: its warnings and log lines quote the
    invalid value (a malformed name or UID), and values are never logged here. Restores the caller's setting."""
    settings = pydicom_config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode = previous


def has_dicom_marker(head: bytes) -> bool:
    """Whether a file's first bytes (132 of them) hold the 'DICM' marker after the 128-byte DICOM preamble."""
    return head[128:132] == b"DICM"


def is_dicom_file(path) -> bool:
    """True when the file has the 'DICM' marker at byte 128 (the DICOM preamble)."""
    try:
        with open(path, "rb") as handle:
            return has_dicom_marker(handle.read(132))
    except OSError:
        return False


def is_dicom_directory(path) -> bool:
    """True for a DICOMDIR: the index of the files of a DICOM media export, which every export (CD, USB stick, PACS
    export) holds beside its images and which holds no image itself. Told by the SOP class of its file meta
    information, which alone is read (not the directory records after it)."""
    if not is_dicom_file(path):
        return False
    try:
        meta = read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - a damaged file meta is reported when the file is read as an image
        return False
    return meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY_SOP_CLASS
