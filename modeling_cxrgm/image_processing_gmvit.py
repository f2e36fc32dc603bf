"""Image processor for chest X-rays: any grey/RGB input at its real bit depth -> normalised (B, C, S, S) tensors.

Accepted images: PIL (L, I;16, I, F, RGB, RGBA, LA, P, PA, 1), numpy (H, W) / (H, W, C) uint8 / uint16 / float in
[0, 1] / bool, torch (H, W) / (C, H, W) / (H, W, C) tensors, a list of those, or a stacked batch (numpy
(B, H, W[, C]), torch (B, C, H, W)), with C in 1, 3, 4.
Where an array or tensor holds its channels is told by `input_data_format` ("channels_first" or "channels_last", as
transformers' processors take it): a 3-D one is then one image, a 4-D one a batch. Without it, the shape tells: a
3-D tensor whose first side is 1, 3 or 4 is one (C, H, W) image (a (3, H, W) stack of three grey images is read as
one RGB image, as transformers' processors read it), else one (H, W, C) image if its last side is, else a stack of
(H, W) grey images; a 3-D numpy array is one (H, W, C) image if its last side is 1, 3 or 4, else a stack of grey
images; a 4-D tensor is (B, C, H, W), a 4-D array (B, H, W, C). Pass grey images as a list or a (B, 1, H, W) batch.
PIL images are turned upright as their EXIF Orientation says. A 16-bit colour or grey + alpha PNG given as opened by
`Image.open` (not yet loaded) is read as 16-bit grey: loading it, Pillow keeps 8 bits of each channel.
Integers are scaled by their real bit depth: the depth a PNG states (hf_datasets' 16-bit images: 16), else 8 for
uint8; for wider integers `bit_depth` if given, else the smallest of 8..16 bits that holds the image's largest value
(PadChest: 12 bits stored in 16); 16-bit images are never clipped to 8 bits. RGB becomes grey by luminance when
`num_channels` is 1 (pipelines hand over RGB); grey is replicated when it is 3. An 8-bit image's resized values are
rounded to 8 bits (multiples of 1/255), as training stores them, so that training, evaluation and prediction give
the model the same input for the same image.

This file is copied next to the weights by `save_pretrained`, so it imports only torch, numpy and transformers (and
Pillow's ImageOps for a PIL image given).
"""

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

# Mean and standard deviation of grey CXR intensities in [0, 1], measured on ~750 public adult and pediatric CXRs.
CXR_MEAN, CXR_STD = 0.520, 0.227
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)
RESIZE_MODES = ("pad", "squash")
PAD_LABEL = 255  # label of padded mask pixels: the config's default `semantic_loss_ignore_index`
SETTINGS = ("size", "num_channels", "resize_mode", "do_normalize", "image_mean", "image_std", "normalization",
            "bit_depth", "equalize")  # the constructor's arguments
CHANNELS = (1, 3, 4)  # grey, RGB, RGBA (alpha dropped)
DATA_FORMATS = ("channels_first", "channels_last")  # the values of `input_data_format` (transformers' ChannelDimension)
BIT_DEPTH_KEY = "bit depth"  # PNG text chunk with the bits an image is scaled by (hf_datasets' 16-bit images: 16)
ORIENTATION_TAG = 0x0112  # EXIF Orientation
SHAPE_TOLERANCE = 0.02  # width/height ratios this far apart are one shape: a map rounded to another resolution
# 16-bit PNGs that Pillow decodes at 8 bits, by the rawmode it opens them with -> the rawmodes whose decodings give each
# pixel's bytes (Pillow's own PNG decoder, so its filters and interlacing apply): the high, then the low byte of each
# RGB(A) channel; the four bytes of a grey + alpha pixel as one RGBA pixel (as hf_datasets reads such files)
SIXTEEN_BIT_COLOUR_PNG = {"RGB;16B": ("RGB;16B", "RGB;16L"), "RGBA;16B": ("RGBA;16B", "RGBA;16L"),
                          "LA;16B": ("RGBA",)}


def _full_depth(image):
    """A PIL image opened from a 16-bit colour or grey + alpha PNG and not yet loaded (`Image.open(path)`) -> 16-bit
    grey ("I;16": colour by luminance, alpha dropped) with the file's info, read again from its file: loading it would
    keep 8 bits of each channel. The grey is scaled to 16 bits by the bits the channels use, and says so
    (`BIT_DEPTH_KEY`), as an array of the same pixels is scaled. A 16-bit TIFF storing white as 0 with black as 0.
    Any other image, or one already loaded (its 16 bits are gone), as it is."""
    tile = getattr(image, "tile", None) or ()
    if getattr(image, "format", None) == "TIFF" and image.mode.startswith("I;16") and image.tag_v2.get(262) == 0:
        bits = image.tag_v2.get(258, (16,))  # WhiteIsZero: Pillow turns 8-bit ones round, not 16-bit ones
        top = 2 ** (bits[0] if isinstance(bits, tuple) else bits) - 1
        from PIL import Image

        turned = Image.fromarray((top - np.clip(np.asarray(image, dtype=np.int64), 0, top)).astype(np.uint16))
        turned.info.update(image.info)
        return turned
    if getattr(image, "format", None) != "PNG" or len(tile) != 1 or tile[0][3] not in SIXTEEN_BIT_COLOUR_PNG:
        return image
    from PIL import Image

    byte_planes = []
    for rawmode in SIXTEEN_BIT_COLOUR_PNG[tile[0][3]]:
        with Image.open(image.filename or image.fp) as plane:
            plane.tile = [(*plane.tile[0][:3], rawmode)]
            plane.load()
            byte_planes.append(np.asarray(plane))
            info = plane.info
    rows, cols = byte_planes[0].shape[:2]
    channels = np.stack(byte_planes, axis=-1).reshape(rows, cols, -1).view(">u2").astype(np.uint16)
    colour = channels[..., :1] if channels.shape[2] == 2 else channels[..., :3]  # grey + alpha: its grey
    grey = colour.astype(np.float32) @ np.array(_LUMA if colour.shape[2] == 3 else (1.0,), dtype=np.float32)
    grey *= np.float32(65535 / (2 ** _bits_used(colour) - 1))
    full = Image.fromarray(np.clip(np.rint(grey), 0, 65535).astype(np.uint16))
    full.info.update(info)
    full.info[BIT_DEPTH_KEY] = "16"
    return full


def _pil_to_array(image) -> np.ndarray:
    """PIL image -> numpy (H, W) or (H, W, C) keeping the bit depth (16-bit modes are read as uint16)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise ValueError("32-bit integer image with values outside 0..65535 cannot be scaled by bit depth")
        return array.astype(np.uint16)
    if mode == "F":
        return np.asarray(image, dtype=np.float32)
    if mode in ("1", "P", "PA", "CMYK", "YCbCr", "HSV", "LAB"):
        image = image.convert("RGB")
    elif mode == "LA":
        image = image.convert("L")
    array = np.asarray(image)
    return array[..., :3] if array.ndim == 3 and array.shape[2] == 4 else array


def _equalize(tensor: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation: each value -> the fraction of the image's values at or below it, in (0, 1].

    The result depends only on the order of the values, so any increasing change of exposure or contrast (window,
    gamma, another detector's response) gives the same output; for 8-bit input it is the classic equalisation.
    """
    flat = tensor.flatten()
    below_or_equal = torch.searchsorted(flat.sort().values, flat, right=True)
    return (below_or_equal.to(torch.float32) / flat.numel()).view_as(tensor)


def _eight_bit_levels(tensor: torch.Tensor) -> torch.Tensor:
    """Unit-range values -> the nearest of the 256 levels of 8 bits (k / 255): a resized (or luminance, or
    equalised) 8-bit image holds no finer values than its pixels, and training stores such images as 8 bits."""
    return tensor.mul(255).round_().div_(255)


def _is_pil(image) -> bool:
    return hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "getbands")


def _upright(image):
    """A PIL image turned as its EXIF Orientation says (as viewers, `datasets` and train.predict show it)."""
    if image.getexif().get(ORIENTATION_TAG, 1) == 1:
        return image
    from PIL import ImageOps  # a PIL image was given, so Pillow is installed

    return ImageOps.exif_transpose(image)


def _stated_bits(image) -> int | None:
    """The bit depth a PIL image's file states (`BIT_DEPTH_KEY`), else None."""
    value = str(image.info.get(BIT_DEPTH_KEY, ""))
    return int(value) if value.isdigit() and 8 <= int(value) <= 16 else None


def _bits_used(values) -> int:
    """The smallest bit depth from 8 to 16 that holds the image's (a tensor's or array's) largest value: 12 for
    PadChest's 12 bits stored in 16, as hf_datasets' preparation scales such images (a prepared image keeps 16)."""
    top = int(values.max()) if values.shape and all(values.shape) else 0
    return min(16, max(8, top.bit_length()))


def _to_unit_float(array, bit_depth: int | None) -> tuple[torch.Tensor, bool]:
    """Integer, float or bool array/tensor -> (float32 tensor in [0, 1], whether it is 8-bit: uint8), integers
    scaled by the real bit depth: 8 for uint8, else `bit_depth` when given and the bits used (`_bits_used`)
    otherwise; bool is 0 / 1."""
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "buif":
            raise TypeError(f"Unsupported image dtype {array.dtype}")
        eight_bit = array.dtype == np.uint8
        tensor = torch.from_numpy(np.array(array, dtype=np.float32 if array.dtype.kind in "bf" else np.int64))
    else:
        if torch.is_complex(array):
            raise TypeError(f"Unsupported image dtype {array.dtype}")
        eight_bit = array.dtype == torch.uint8
        if array.dtype == torch.bool:
            tensor = array.to(torch.float32)
        else:
            tensor = array if array.is_floating_point() else array.to(torch.int64)
    if not tensor.numel():
        raise ValueError(f"The image has no pixels (shape {tuple(tensor.shape)})")
    if tensor.is_floating_point():
        tensor = tensor.float()
        if not tensor.isfinite().all():
            raise ValueError("Float images must not hold NaN or infinite values")
        if tensor.min() < 0 or tensor.max() > 1:
            raise ValueError(
                "Float images must be in [0, 1]; got values in "
                f"[{tensor.min().item():.3g}, {tensor.max().item():.3g}]. Pass integers to scale by bit depth."
            )
        return tensor, False
    depth = 8 if eight_bit else bit_depth or _bits_used(tensor)
    if tensor.min() < 0 or tensor.max() > 2**depth - 1:
        raise ValueError(f"Integer image values must lie in 0..{2**depth - 1} for a bit depth of {depth}")
    return tensor.to(torch.float32) / float(2**depth - 1), eight_bit


def _is_channels_last_tensor(tensor: torch.Tensor) -> bool:
    """A 3-D torch image whose first dimension cannot be channels but whose last can: (H, W, C), e.g. a tensor made
    from `np.asarray(pil_image)`."""
    return tensor.ndim == 3 and tensor.shape[0] not in CHANNELS and tensor.shape[2] in CHANNELS


def _data_format(value) -> str | None:
    """`input_data_format` (a string or transformers' ChannelDimension) -> one of `DATA_FORMATS`, or None."""
    value = getattr(value, "value", value)
    if value is not None and value not in DATA_FORMATS:
        raise ValueError(f"input_data_format must be one of {DATA_FORMATS} or None, got {value!r}")
    return value


def _channels_first(tensor: torch.Tensor, from_numpy: bool, data_format: str | None = None) -> torch.Tensor:
    """One image -> (C, H, W): (H, W), or channels where `data_format` says; without it, numpy is (H, W, C) and
    torch (C, H, W) or (H, W, C) (see the module docstring)."""
    if tensor.ndim == 2:
        return tensor[None]
    if tensor.ndim != 3:
        raise ValueError(f"An image must have 2 or 3 dimensions, got shape {tuple(tensor.shape)}")
    if data_format is not None:
        axis = 0 if data_format == "channels_first" else 2
        if tensor.shape[axis] not in CHANNELS:
            raise ValueError(f"An image of shape {tuple(tensor.shape)} with input_data_format={data_format!r} has "
                             f"{tensor.shape[axis]} channels, not 1, 3 or 4; pass grey images as a list or a "
                             "(B, 1, H, W) batch")
        return (tensor if axis == 0 else tensor.permute(2, 0, 1))[:3]
    if from_numpy:
        if tensor.shape[2] not in CHANNELS:
            raise ValueError(f"numpy images must be (H, W) or (H, W, C) with C in 1, 3, 4; got {tuple(tensor.shape)}")
        tensor = tensor.permute(2, 0, 1)
    elif _is_channels_last_tensor(tensor):
        tensor = tensor.permute(2, 0, 1)
    elif tensor.shape[0] not in CHANNELS:
        raise ValueError(
            f"torch images must be (H, W), (C, H, W) or (H, W, C) with C in 1, 3, 4; got {tuple(tensor.shape)}"
        )
    return tensor[:3]


def _split_batch(images, data_format: str | None = None) -> list:
    """A single image, a list/tuple of images or a stacked batch -> list of single images: with `data_format`, a 4-D
    array or tensor is a batch and any other one image; without it, see the module docstring."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if data_format is not None and isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[2] not in CHANNELS):
            return list(images)
        return [images]
    if isinstance(images, torch.Tensor):
        grey_stack = images.ndim == 3 and images.shape[0] not in CHANNELS and not _is_channels_last_tensor(images)
        if images.ndim == 4 or grey_stack:
            return list(images)
        return [images]
    return [images]


def _per_channel(values, num_channels: int) -> list[float]:
    """Mean or std values, one per channel: a single value serves every channel (a grey statistic for RGB)."""
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return values * num_channels if len(values) == 1 else values


def _square_side(size: dict) -> int:
    """{"height": S, "width": S} or {"shortest_edge": S}, as other processors' configs give it -> S (outputs are
    S x S)."""
    if "height" in size or "width" in size:
        if size.get("height") != size.get("width"):
            raise ValueError(f"size must be square (outputs are size x size pixels), got {size}")
        return size["height"]
    if "shortest_edge" in size:
        return size["shortest_edge"]
    raise ValueError(f"size must be an int, {{'height': S, 'width': S}} or {{'shortest_edge': S}}, got {size}")


def _check_map_fits(map_size, image_size) -> None:
    """ValueError for a segmentation map whose shape (width/height ratio, `SHAPE_TOLERANCE` apart) is not its
    image's: resized onto the image, it would be stretched off it (the map of another image, or of a cropped or
    padded copy). Sizes are (H, W)."""
    (map_height, map_width), (height, width) = map_size, image_size
    if abs(map_width * height - map_height * width) > SHAPE_TOLERANCE * map_height * width:
        raise ValueError(f"A segmentation map of {map_width}x{map_height} pixels for an image of {width}x{height}: "
                         "another shape, so it would be stretched off the image (the map of another image?); a map "
                         "may be smaller or larger than its image, not of another shape")


def _split_maps(maps) -> list:
    """Segmentation maps -> list of single maps: a 3-D array or tensor is a stack of (H, W) maps unless it is one map
    with a channel axis, (1, H, W) or (H, W, C)."""
    if isinstance(maps, (np.ndarray, torch.Tensor)) and maps.ndim == 3:
        one_map = maps.shape[0] == 1 or maps.shape[2] in CHANNELS
        return [maps] if one_map else list(maps)
    return _split_batch(maps)


class GroupMaskedViTImageProcessor(BaseImageProcessor):
    r"""
    Turns CXRs into model inputs.

    Args:
        size (`int`): output side in pixels (square).
        num_channels (`int`): 1 (grey) or 3 (grey replicated / RGB).
        resize_mode (`str`): "pad" keeps the aspect ratio and pads the short side (centred, black; segmentation maps
            with `PAD_LABEL`, ignored by the loss and by Dice / IoU), "squash" stretches.
        do_normalize (`bool`), image_mean / image_std (`list[float]`): per channel; CXR statistics by default
            (`normalization="imagenet"` picks ImageNet's for 3-channel models started from ImageNet weights).
        bit_depth (`int`, *optional*): bits used by integer inputs wider than uint8 (e.g. 12) that do not state
            theirs (a PNG written by hf_datasets states it, `BIT_DEPTH_KEY`, and is read by it); uint8 is always 8
            bits; by default the smallest of 8..16 bits that holds each image's largest value (as data preparation
            does).
        equalize (`bool`): histogram-equalise each image over its own pixels before resizing, which removes
            exposure and processing differences between sites and devices (see `_equalize`).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        num_channels: int = 1,
        resize_mode: str = "pad",
        do_normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        normalization: str = "cxr",
        bit_depth: int | None = None,
        equalize: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if normalization not in ("cxr", "imagenet"):
            raise ValueError(f"normalization must be 'cxr' or 'imagenet', got {normalization!r}")
        if bit_depth is not None and not (isinstance(bit_depth, int) and 8 <= bit_depth <= 16):
            raise ValueError(f"bit_depth must be None or an integer from 8 to 16, got {bit_depth!r}")
        if isinstance(size, dict):
            size = _square_side(size)
        if normalization == "imagenet" and num_channels == 3:
            default_mean, default_std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        elif normalization == "imagenet":
            default_mean, default_std = [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
        else:
            default_mean, default_std = [CXR_MEAN] * num_channels, [CXR_STD] * num_channels
        self.size = int(size)
        self.num_channels = num_channels
        self.resize_mode = resize_mode
        self.do_normalize = do_normalize
        self.normalization = normalization
        self.image_mean = _per_channel(image_mean, num_channels) if image_mean is not None else default_mean
        self.image_std = _per_channel(image_std, num_channels) if image_std is not None else default_std
        self.bit_depth = bit_depth
        self.equalize = bool(equalize)
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != num_channels:
                raise ValueError(f"{name} needs {num_channels} values, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, image_processor_dict: dict, **kwargs):
        """Settings given to `from_pretrained` (e.g. `equalize=True`, `num_channels=3`) go through the constructor,
        checked like saved ones; a saved one-value mean / std then serves every channel."""
        settings = {name: kwargs.pop(name) for name in SETTINGS if name in kwargs}
        return super().from_dict({**image_processor_dict, **settings}, **kwargs)

    def to_unit_tensor(self, image, input_data_format=None) -> tuple[torch.Tensor, bool]:
        """One image -> (float32 (num_channels, H, W) in [0, 1], whether the image is 8-bit); `input_data_format`
        says where an array's or tensor's channels are (see the module docstring)."""
        data_format = _data_format(input_data_format)
        if _is_pil(image):
            image = _full_depth(image)
            array = _pil_to_array(_upright(image))
            (tensor, eight_bit), from_numpy = _to_unit_float(array, _stated_bits(image) or self.bit_depth), True
            data_format = "channels_last"  # (H, W[, C]) whatever was said of arrays and tensors
        elif isinstance(image, np.ndarray):
            (tensor, eight_bit), from_numpy = _to_unit_float(image, self.bit_depth), True
        elif isinstance(image, torch.Tensor):
            (tensor, eight_bit), from_numpy = _to_unit_float(image.detach().cpu(), self.bit_depth), False
        else:
            raise TypeError(f"Unsupported image type {type(image).__name__}; pass PIL images, numpy arrays or tensors")
        tensor = _channels_first(tensor, from_numpy, data_format)
        if tensor.shape[0] == 3 and self.num_channels == 1:
            luma = torch.tensor(_LUMA, dtype=tensor.dtype)[:, None, None]
            tensor = (tensor * luma).sum(0, keepdim=True)
        elif tensor.shape[0] == 1 and self.num_channels == 3:
            tensor = tensor.expand(3, -1, -1)
        return (_equalize(tensor) if self.equalize else tensor), eight_bit

    def _geometry(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(resized_h, resized_w, top, left) of an image of that size inside the output square."""
        if self.resize_mode == "squash":
            return self.size, self.size, 0, 0
        scale = self.size / max(height, width)
        resized_h, resized_w = max(1, round(height * scale)), max(1, round(width * scale))
        return resized_h, resized_w, (self.size - resized_h) // 2, (self.size - resized_w) // 2

    def _fit(self, tensor: torch.Tensor, mode: str, pad_value: float) -> torch.Tensor:
        """(C, H, W) -> (C, size, size): resize (keeping aspect and padding, or squashing)."""
        resized_h, resized_w, top, left = self._geometry(*tensor.shape[1:])
        if (resized_h, resized_w) != tuple(tensor.shape[1:]):
            if mode == "nearest":
                tensor = F.interpolate(tensor[None], size=(resized_h, resized_w), mode="nearest-exact")[0]
            else:
                tensor = F.interpolate(tensor[None], size=(resized_h, resized_w), mode="bilinear", antialias=True,
                                       align_corners=False)[0].clamp(0, 1)
        if (resized_h, resized_w) != (self.size, self.size):
            canvas = tensor.new_full((tensor.shape[0], self.size, self.size), pad_value)
            canvas[:, top:top + resized_h, left:left + resized_w] = tensor
            tensor = canvas
        return tensor

    def _label_map(self, segmentation_map, image_size=None) -> torch.Tensor:
        """A mask (PIL / numpy / tensor, (H, W)) -> int64 (size, size) by nearest resize, padded with `PAD_LABEL`;
        0/255 masks become 0/1, also with grey edges (anti-aliased, resized or JPEG masks: 128-254 is lung). A mask of
        another size than its image, `image_size` (H, W), is first resized to it (it covers the whole image, as SCR's
        1024 px masks of JSRT's 2048 px images do), so both are padded alike; one of another shape is refused
        (`_check_map_fits`). A PIL mask is turned upright as its EXIF Orientation says, as images are. A colour or
        grey + alpha PIL mask (RGB, RGBA, LA) is a drawn binary mask: lung wherever its grey is not black (above 127
        in a 0/255 one with grey edges), as data building reads mask files."""
        if _is_pil(segmentation_map):
            segmentation_map = _upright(segmentation_map)  # as its image, when drawn on it
        if _is_pil(segmentation_map) and segmentation_map.mode in ("RGB", "RGBA", "LA"):
            grey = np.asarray(segmentation_map.convert("L"))
            grey_edges = grey.max(initial=0) == 255 and ((grey > 127) & (grey < 255)).any()
            segmentation_map = (grey > (127 if grey_edges else 0)).astype(np.uint8)
        if isinstance(segmentation_map, torch.Tensor):
            tensor = segmentation_map.detach().cpu()
        else:
            tensor = torch.from_numpy(np.array(segmentation_map, dtype=np.int64))
        if tensor.ndim == 3 and 1 in (tensor.shape[0], tensor.shape[-1]):
            tensor = tensor.squeeze(0 if tensor.shape[0] == 1 else -1)
        if tensor.ndim != 2:
            raise ValueError(f"A segmentation map must be (H, W), got shape {tuple(tensor.shape)}")
        tensor = tensor.long()
        if image_size is not None and tuple(tensor.shape) != tuple(image_size):
            _check_map_fits(tuple(tensor.shape), tuple(image_size))
            tensor = F.interpolate(tensor[None, None].float(), size=tuple(image_size), mode="nearest-exact")
            tensor = tensor[0, 0].long()
        values = torch.unique(tensor)
        if values.max() in (255, 65535) and ((values == 0) | (values == values.max())).all():  # 0/255 (0/65535) mask
            tensor = (tensor == values.max()).long()
        elif values.min() >= 0 and values.max() == 255 and ((values > 127) & (values < 255)).any():
            tensor = (tensor > 127).long()  # a 0/255 mask with grey edges: its 255 is lung, not the ignore label
        return self._fit(tensor[None].float(), "nearest", float(PAD_LABEL))[0].long()

    def preprocess(self, images, segmentation_maps=None, return_tensors="pt", input_data_format=None,
                   **kwargs) -> BatchFeature:
        """images -> BatchFeature(pixel_values (B, num_channels, size, size) float32[, labels (B, size, size) int64]).

        input_data_format: "channels_first" or "channels_last" (or transformers' ChannelDimension): where the channels
        of array and tensor images are; a 3-D one is then one image, a 4-D one a batch. Without it the shape tells
        (see the module docstring): a (3, H, W) or (4, H, W) tensor is one colour image."""
        for key, value in kwargs.items():
            if key not in ("do_normalize",):
                raise TypeError(f"Unexpected argument {key!r} for {type(self).__name__}")
        do_normalize = kwargs.get("do_normalize", self.do_normalize)
        data_format = _data_format(input_data_format)
        batch = _split_batch(images, data_format)
        if not batch:
            raise ValueError("No images given")
        unit = [self.to_unit_tensor(image, data_format) for image in batch]
        fitted = [(self._fit(tensor, "bilinear", 0.0), eight_bit) for tensor, eight_bit in unit]
        pixel_values = torch.stack([_eight_bit_levels(tensor) if eight_bit else tensor for tensor, eight_bit in fitted])
        if do_normalize:
            mean = torch.tensor(self.image_mean)[None, :, None, None]
            std = torch.tensor(self.image_std)[None, :, None, None]
            pixel_values = (pixel_values - mean) / std
        data = {"pixel_values": pixel_values}
        if segmentation_maps is not None:
            maps = _split_maps(segmentation_maps)
            if len(maps) != len(batch):
                one_stack = isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 3 and len(batch) == 1
                hint = (f"; a {tuple(images.shape)} {type(images).__name__} is one image with its channels (see "
                        "input_data_format): pass grey images as a list or a (B, 1, H, W) batch") if one_stack else ""
                raise ValueError(f"Got {len(batch)} images but {len(maps)} segmentation maps{hint}")
            data["labels"] = torch.stack([self._label_map(m, tensor.shape[1:]) for m, (tensor, _) in zip(maps, unit)])
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        elif return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _label_logits(self, logits: torch.Tensor, target_size=None) -> torch.Tensor:
        """(K, S, S) logits of one image -> (K, H, W) at its original size, without the padding of "pad" resizing."""
        logits = logits.float()
        if target_size is None:
            return logits
        height, width = (int(v) for v in target_size)
        scale = logits.shape[-1] / self.size
        resized_h, resized_w, top, left = (round(v * scale) for v in self._geometry(height, width))
        logits = logits[:, top:top + resized_h, left:left + resized_w]
        return F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0]

    def post_process_semantic_segmentation(self, outputs, target_sizes=None) -> list[torch.Tensor]:
        """Model outputs -> one (H, W) int64 map of label ids per image (argmax; label 0 is background).

        target_sizes: (height, width) of each original image; the padding added by "pad" resizing is removed first.
        A one-label (sigmoid) model is refused: its pixels outside the label have no label id to hold, so the
        image-segmentation pipeline could not name them. Its mask is `post_process_instance_segmentation`'s (the
        pipeline's default and `subtask="instance"`).
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        if logits.shape[1] == 1:
            raise ValueError(
                "A one-label segmenter (num_labels=1, a sigmoid map) has no background label, so it has no semantic "
                "map of label ids: use the image-segmentation pipeline's default subtask or subtask='instance' "
                "(post_process_instance_segmentation), which returns its label's pixels as one mask."
            )
        return [self._label_logits(logits[index], None if target_sizes is None else target_sizes[index]).argmax(0)
                for index in range(logits.shape[0])]

    def post_process_instance_segmentation(self, outputs, target_sizes=None, threshold: float = 0.5,
                                           mask_threshold: float = 0.5, **kwargs) -> list[dict]:
        """One segment per label found, as the image-segmentation pipeline expects: {"segmentation", "segments_info"}.

        The pipeline's two cuts apply as in DETR's and MaskFormer's post-processing: `mask_threshold` decides which
        pixels a mask covers; `threshold` (the pipeline passes 0.9 unless told otherwise) which masks are kept: those
        whose class probability, the model's certainty of *which* structure the mask shows, reaches it. Background is
        those models' "no object" class, so the class probability is shared among the structures only: per pixel
        p(label) / p(any structure), averaged over the mask. How sure the model is that a pixel shows a structure at
        all is the mask's cut, not the class's: the lungs of a weak model (just above `mask_threshold`) are kept at
        the default.

        A one-channel (binary) model reports only its foreground (probability > `mask_threshold`), as label 0: its
        one structure has class probability 1, kept at any `threshold` up to 1. A multi-class model (class 0 is
        background) reports the classes of its argmax map but the structures whose class probability is below
        `threshold` (masks it cannot tell from another structure's); the background segment is always reported.
        A segment's score is its class probability times the mean probability of its label over its pixels (for a
        one- or two-label model: that mean). `overlap_mask_area_threshold` is unused.
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        results = []
        for index in range(logits.shape[0]):
            image_logits = self._label_logits(logits[index], None if target_sizes is None else target_sizes[index])
            if image_logits.shape[0] == 1:
                probability = torch.sigmoid(image_logits[0])
                segmentation = (probability > mask_threshold).long()
                found = [(1, 0, probability, 1.0)] if segmentation.any() else []
            else:
                probabilities = image_logits.softmax(0)
                segmentation = probabilities.argmax(0)
                structures = probabilities[1:].sum(0)
                found = []
                for label in torch.unique(segmentation).tolist():
                    pixels = segmentation == label
                    share = 1.0 if label == 0 else float((probabilities[label][pixels] / structures[pixels]).mean())
                    if label == 0 or share >= threshold:
                        found.append((label, label, probabilities[label], share))
            segments = [{"id": seg_id, "label_id": label, "score": share * float(prob[segmentation == seg_id].mean())}
                        for seg_id, label, prob, share in found]
            results.append({"segmentation": segmentation, "segments_info": segments})
        return results

__all__ = ["GroupMaskedViTImageProcessor"]
