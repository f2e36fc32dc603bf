"""Read image files of any supported kind into grey numpy arrays, resize and encode them.

Grey arrays are (rows, cols): uint8, uint16 scaled by the bits they use (see `effective_top`), or float32 in
[0, 1] at full scale (windowed DICOMs and float images, whose brightest value need not reach 1). Pillow's own
convert("L") clips 16-bit data, so 16-bit files are read through numpy; Pillow decodes 16-bit colour and grey +
alpha PNGs at 8 bits (it has no mode that holds them), so they are decoded here at full depth (`load_full_depth`).
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features
from PIL.PngImagePlugin import PngInfo

from .dicom import has_dicom_marker, is_dicom_file, read_dicom
from .errors import ImageReadError

JSRT_SHAPE = (2048, 2048)
JSRT_BITS = 12
# PNG text chunk of the 16-bit images written here: their values are scaled by 2**16 - 1 (to_bits), which the image
# processor (modeling_cxrgm, the same key) then uses instead of guessing from the brightest value.
BIT_DEPTH_KEY = "bit depth"
# the suffixes of the image formats read (.jpe and .jfif are JPEG; WebP where Pillow was built with it), by the data
# set builders and train.predict alike; DICOM files are read under any name
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".gif") + (
    (".webp",) if features.check("webp") else ())
DICOM_SUFFIXES = (".dcm", ".dicom")
# 16-bit PNGs that Pillow decodes at 8 bits, by the rawmode it opens them with -> the rawmodes whose decodings give each
# pixel's bytes (Pillow's own PNG decoder, so its filters and interlacing apply): the high, then the low byte of each
# RGB(A) channel; the four bytes of a grey + alpha pixel as one RGBA pixel
SIXTEEN_BIT_COLOUR_PNG = {"RGB;16B": ("RGB;16B", "RGB;16L"), "RGBA;16B": ("RGBA;16B", "RGBA;16L"),
                          "LA;16B": ("RGBA",)}
# how `stored_mode` names such a file (its rawmode less the byte order: no PIL mode holds it), which `read_grey` and
# `open_image` read as 16-bit grey
SIXTEEN_BIT_COLOUR_MODES = tuple(rawmode.removesuffix("B") for rawmode in SIXTEEN_BIT_COLOUR_PNG)
# how `stored_mode` names a TIFF that datasets' Image feature (Pillow, opening it by name) would misread and
# `read_grey` reads right: one its EXIF Orientation turns (Pillow 13 turns an uncompressed one as it maps it, and
# scrambles its pixels), and a 16-bit one storing white as 0 (Pillow turns 8-bit ones round, not these)
MISREAD_TIFF = "TIFF misread by name"
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L") and the image processor weigh colour


def is_dicom_path(path) -> bool:
    """Whether a file is read as DICOM, by the data set builders, `read_grey` and train.predict alike: by a .dcm /
    .dicom suffix (an empty or damaged one is reported when read), or by the 'DICM' marker under any other name (PACS
    exports write IM0001, 1.2.840...; a DICOM file renamed x.png is still one, which an image reader would refuse or
    misread). `read_grey`, `stored_mode` and `open_image` read the marker from the file they open anyway."""
    return has_dicom_suffix(path) or is_dicom_file(path)


def has_dicom_suffix(path) -> bool:
    """Whether a file is named as DICOM (.dcm / .dicom): how the builders reading a table of files (cxr_folder,
    cxr_pool: tens of thousands of rows) tell a DICOM file without opening every file, so that a build, and the
    check of a resumed preparation (os.stat only), reads no image it does not need. A DICOM file they list under
    another name is told when it is read (`stored_mode`, `read_grey`)."""
    return os.path.splitext(path)[1].lower() in DICOM_SUFFIXES


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says (as viewers, `datasets.Image` and transformers show it)."""
    if image.getexif().get(Image.ExifTags.Base.Orientation, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def upright_size(path) -> tuple[int, int]:
    """(width, height) of a PNG/JPEG/TIFF/... file as shown upright (see `upright`), from its header alone."""
    with image_read_errors(path), Image.open(path) as image:
        width, height = image.size
        turned = image.getexif().get(Image.ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)  # a quarter turn
        if image.format == "TIFF" and (image.tag_v2.get(256), image.tag_v2.get(257)) != (width, height):
            turned = False  # Pillow (13) gives a TIFF's size turned already
        return (height, width) if turned else (width, height)


def stated_bits(image: Image.Image) -> int | None:
    """The bit depth (8..16) an image's file states (`BIT_DEPTH_KEY`), else None."""
    value = str(image.info.get(BIT_DEPTH_KEY, ""))
    return int(value) if value.isdigit() and 8 <= int(value) <= 16 else None


class UnscalableImageError(ValueError):
    """An image whose values no bit depth scales (a 32-bit integer image beyond 0..65535), refused as the image
    processor refuses it rather than clipped."""


def pil_to_grey(image: Image.Image) -> np.ndarray:
    """PIL image of any mode -> (rows, cols) uint8 (colour by luminance, transparency ignored), uint16 for
    16-bit/32-bit integer grey and for float grey holding counts (values above 1), or float32 in [0, 1] for other
    float grey, upright. A 16-bit image stating its bit depth (`BIT_DEPTH_KEY`, the images written here) becomes
    float32 in [0, 1] by it: its brightest value does not tell its depth (a windowed DICOM may stay below mid-grey)."""
    stated = stated_bits(image)
    image = upright(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UnscalableImageError("32-bit integer image with values outside 0..65535, which no bit depth up to "
                                       "16 scales (the image processor refuses it too)")
        if stated:
            return np.clip(values.astype(np.float32) / np.float32(2**stated - 1), 0.0, 1.0)
        return values.astype(np.uint16)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if values.max(initial=0.0) <= 1.0:
            return np.clip(values, 0.0, 1.0)
        return np.clip(values, 0, 65535).round().astype(np.uint16)
    return np.asarray(image.convert("L"), dtype=np.uint8)  # alpha dropped, as datasets, pipelines and the processor do


def _sixteen_bit_colour_rawmode(image: Image.Image) -> str | None:
    """The rawmode (a key of `SIXTEEN_BIT_COLOUR_PNG`) of an opened, not yet loaded 16-bit colour or grey + alpha PNG,
    else None."""
    if image.format != "PNG" or len(image.tile) != 1:
        return None
    rawmode = image.tile[0][3]
    return rawmode if rawmode in SIXTEEN_BIT_COLOUR_PNG else None


def load_full_depth(image: Image.Image, handle) -> Image.Image:
    """`image`, opened from `handle` (a seekable file or BytesIO) and not yet loaded, with its pixels loaded at full
    depth: a 16-bit colour or grey + alpha PNG, which Pillow would decode at 8 bits, becomes a 16-bit grey image
    ("I;16": colour by luminance, alpha dropped, as convert("L") makes 8-bit grey) with the file's info (text chunks,
    EXIF), scaled to 16 bits by the bits its channels use and stating so (`BIT_DEPTH_KEY`): a tinted image's grey
    stays below its brightest channel, and its own brightest value would tell too few bits; any other image is
    loaded as it is."""
    rawmode = _sixteen_bit_colour_rawmode(image)
    if rawmode is None:
        image.load()
        return _black_is_zero(image)
    byte_planes = []
    for plane_rawmode in SIXTEEN_BIT_COLOUR_PNG[rawmode]:
        with Image.open(handle) as plane:  # read again from the start of `handle`
            plane.tile = [(*plane.tile[0][:3], plane_rawmode)]
            plane.load()
            byte_planes.append(np.asarray(plane))
            info = plane.info
    rows, cols = byte_planes[0].shape[:2]
    channels = np.stack(byte_planes, axis=-1).reshape(rows, cols, -1).view(">u2").astype(np.uint16)  # (rows, cols, C)
    colour = channels[..., :1] if channels.shape[2] == 2 else channels[..., :3]  # grey + alpha: its grey
    grey = colour.astype(np.float32) @ np.array(LUMA if colour.shape[2] == 3 else (1.0,), dtype=np.float32)
    grey *= np.float32(65535 / effective_top(colour))
    full = Image.fromarray(np.clip(np.rint(grey), 0, 65535).astype(np.uint16))
    full.info.update(info)
    full.info[BIT_DEPTH_KEY] = "16"
    return full


def _black_is_zero(image: Image.Image) -> Image.Image:
    """A loaded 16-bit grey TIFF that stores white as 0 (Photometric WhiteIsZero: Pillow turns 8-bit ones round, not
    these) as one that stores black as 0, with its info; any other image as it is."""
    if image.format != "TIFF" or not image.mode.startswith("I;16") or image.tag_v2.get(262) != 0:
        return image
    bits = image.tag_v2.get(258, (16,))
    top = 2 ** (bits[0] if isinstance(bits, tuple) else bits) - 1
    turned = Image.fromarray((top - np.clip(np.asarray(image, dtype=np.int64), 0, top)).astype(np.uint16))
    turned.info.update(image.info)
    return turned


def read_jsrt_raw(path) -> np.ndarray:
    """JSRT .IMG: 2048x2048 big-endian 12-bit raw, stored dark-is-high; returned as uint16 0 = black."""
    data = np.fromfile(path, dtype=">u2")
    if data.size != JSRT_SHAPE[0] * JSRT_SHAPE[1]:
        raise ImageReadError(path, f"JSRT raw file has {data.size} pixels, expected 2048x2048")
    values = np.clip(data.reshape(JSRT_SHAPE), 0, 2**JSRT_BITS - 1).astype(np.float64)
    return ((2**JSRT_BITS - 1 - values) / (2**JSRT_BITS - 1) * 65535).round().astype(np.uint16)


def float_to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    """Float array in [0, 1] -> uint8 (bits=8) or uint16 (bits=16), 1 = the type's largest value."""
    top = 255 if bits == 8 else 65535
    scaled = np.clip(image, 0.0, 1.0) * np.float32(top)
    return np.rint(scaled, out=scaled).astype(np.uint8 if bits == 8 else np.uint16)


@contextlib.contextmanager
def image_read_errors(path):
    """Turn PIL's errors inside the block into an ImageReadError naming `path` and the reason."""
    try:
        yield
    except UnscalableImageError as err:
        raise ImageReadError(path, str(err)) from err
    except UnidentifiedImageError as err:
        raise ImageReadError(path, "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from err


def open_image(path) -> Image.Image | None:
    """A PNG/JPEG/TIFF/... file as a loaded, upright PIL image at its own mode and bit depth (a 16-bit colour or grey +
    alpha PNG as 16-bit grey, see `load_full_depth`), or None for a DICOM file under another name (see
    `_pillow_image`); ImageReadError if unreadable (naming a missing or empty file as such)."""
    path = _existing_file(path)
    with image_read_errors(path), open(path, "rb") as handle:
        image = _pillow_image(handle)
        if image is None:
            return None
        with image:
            return upright(load_full_depth(image, handle)).copy()  # closing the file releases the opened image's pixels


def _existing_file(path) -> str:
    """`path` as a string; ImageReadError when it is missing or empty."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageReadError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    return path


# How a whole file of these formats ends: the PNG IEND chunk (its length, type and CRC), the JPEG end-of-image marker
WHOLE_FILE_ENDS = {"PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}


def stored_mode(path) -> str | None:
    """The PIL mode a PNG/JPEG/TIFF/... file is stored in, from its header (pixels are not decoded), one of
    `SIXTEEN_BIT_COLOUR_MODES` for a 16-bit colour or grey + alpha PNG (Pillow, and so datasets' Image feature,
    decodes it at 8 bits), `MISREAD_TIFF` for a TIFF that Pillow misreads by name (see there), or None for a DICOM file
    under another name (see `_pillow_image`); ImageReadError if the
    file is missing, empty, not an image, or a PNG/JPEG cut short. A PNG/JPEG that does not end as a whole one does (a
    copy or download cut short) is decoded to tell: a truncated one fails, one with bytes after its end (some
    exporters pad files) is fine."""
    path = _existing_file(path)
    with image_read_errors(path), open(path, "rb") as handle:
        image = _pillow_image(handle)
        if image is None:
            return None
        with image:
            rawmode = _sixteen_bit_colour_rawmode(image)
            end = WHOLE_FILE_ENDS.get(image.format)
            if end is not None and not _file_end(path, 64).rstrip(b"\x00").endswith(end):
                image.load()  # raises for a truncated file: "image file is truncated"
            if image.format == "TIFF" and (image.getexif().get(Image.ExifTags.Base.Orientation, 1) != 1
                                           or image.mode.startswith("I;16") and image.tag_v2.get(262) == 0):
                return MISREAD_TIFF
            return image.mode if rawmode is None else rawmode.removesuffix("B")


def _pillow_image(handle) -> Image.Image | None:
    """Pillow's image of an open file (call inside `image_read_errors`), or None for a DICOM file: its 'DICM' marker
    is read from this file, so an image file is opened once. A DICOM preamble may hold a TIFF header (pydicom's
    RG1_UNCR.dcm does), which Pillow would read without the DICOM window."""
    if has_dicom_marker(handle.read(132)):
        return None
    handle.seek(0)
    return Image.open(handle)


def _file_end(path, size: int) -> bytes:
    """The last `size` bytes of a file (all of a shorter one)."""
    with open(path, "rb") as file:
        file.seek(max(0, os.path.getsize(path) - size))
        return file.read()


def read_grey(path, *, dicom_voi: str = "header") -> np.ndarray:
    """Read a PNG/JPEG/TIFF/..., DICOM (a .dcm / .dicom name, or the 'DICM' marker under any other) or JSRT raw file
    into a grey array (see the module docstring).

    DICOM files become float32 in [0, 1], the windowed image at full scale: a window whose brightest pixel
    stays below white keeps it below white, as `train.predict` and the image processor see the file.
    Raises ImageReadError (or a DicomError) naming the path and the reason.
    """
    path = _existing_file(path)
    if path.upper().endswith(".IMG"):
        return read_jsrt_raw(path)
    if not has_dicom_suffix(path):
        with image_read_errors(path), open(path, "rb") as handle:
            image = _pillow_image(handle)
            if image is not None:
                with image:
                    return pil_to_grey(load_full_depth(image, handle))
    return read_dicom(path, voi=dicom_voi)[0].astype(np.float32, copy=False)


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side equals `size`, keeping the dtype (floats stay in [0, 1]): antialiased bilinear, the
    resampling of the model's image processor, so shards prepared at the model's size hold what it makes of the
    original file."""
    rows, cols = image.shape
    scale = size / max(rows, cols)
    new_shape = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    if new_shape == (cols, rows):
        return image
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize(new_shape, Image.Resampling.BILINEAR))
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(new_shape, Image.Resampling.BILINEAR)
    resized = np.asarray(resized)
    if image.dtype.kind == "f":
        return np.clip(resized, 0.0, 1.0)
    return np.clip(resized, 0, 65535).round().astype(np.uint16)


def effective_top(image: np.ndarray) -> int:
    """Largest value of the image's real bit depth: 255 for uint8, else 2**k - 1 with k in 8..16
    the smallest number of bits that holds the maximum (PadChest stores 10-12 bits in 16)."""
    if image.dtype == np.uint8:
        return 255
    bits = max(8, int(np.ceil(np.log2(int(image.max(initial=0)) + 1))))
    return 2 ** min(bits, 16) - 1


def to_bits(image: np.ndarray, bits: int, top: int | None = None) -> np.ndarray:
    """Grey array -> uint8 (bits=8) or uint16 (bits=16) spanning the full range: integers scaled by `top`, by default
    the image's real bit depth (see `effective_top`), floats in [0, 1] by 1."""
    if image.dtype.kind == "f":
        return float_to_uint(image, bits)
    top = top or effective_top(image)
    out_top = 255 if bits == 8 else 65535
    if top == out_top:
        return image.astype(np.uint8 if bits == 8 else np.uint16)
    scaled = (image.astype(np.float32) * (out_top / top)).round()
    return np.clip(scaled, 0, out_top).astype(np.uint8 if bits == 8 else np.uint16)


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """Grey uint8/uint16 array -> PNG bytes (8- or 16-bit grey); a 16-bit one states its bit depth (`BIT_DEPTH_KEY`),
    as a dim image's brightest value does not tell it (a windowed DICOM may stay below mid-grey)."""
    info = PngInfo()
    if image.dtype == np.uint16:
        info.add_text(BIT_DEPTH_KEY, "16")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level, pnginfo=info)
    return buffer.getvalue()
