"""GroupMaskedViTImageProcessor: every input kind at its real bit depth, geometry, masks, errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_cxrgm import GroupMaskedViTImageProcessor
from modeling_cxrgm.image_processing_gmvit import BIT_DEPTH_KEY, CXR_MEAN, CXR_STD, PAD_LABEL


def unnormalised(size=8, num_channels=1, **kwargs):
    return GroupMaskedViTImageProcessor(size=size, num_channels=num_channels, do_normalize=False, **kwargs)


def gradient(height=8, width=8, dtype=np.uint8, top=255):
    return np.linspace(0, top, height * width).reshape(height, width).round().astype(dtype)


def test_pil_grey_8_bit():
    values = unnormalised()(Image.fromarray(gradient()), return_tensors="pt").pixel_values
    assert values.shape == (1, 1, 8, 8) and values.dtype == torch.float32
    assert torch.allclose(values[0, 0], torch.from_numpy(gradient()).float() / 255)


def test_16_bit_png_is_scaled_by_16_bits_not_clipped(tmp_path):
    array = gradient(dtype=np.uint16, top=60000)
    Image.fromarray(array).save(tmp_path / "deep.png")
    image = Image.open(tmp_path / "deep.png")
    assert image.mode in ("I;16", "I")
    values = unnormalised()(image).pixel_values[0, 0]
    assert torch.allclose(values, torch.from_numpy(array.astype(np.float32)) / 65535, atol=1e-6)
    assert values.max() > 0.9


def test_numpy_uint16_with_fewer_bits_used():
    array = gradient(dtype=np.uint16, top=4095)
    values = unnormalised(bit_depth=12)(array).pixel_values[0, 0]
    assert torch.isclose(values.max(), torch.tensor(1.0))


def test_16_bit_files_with_fewer_bits_used_look_as_after_preparation(tmp_path):
    """A PadChest-like PNG (12 bits stored in 16) read raw by predict or evaluation is scaled by the 12 bits it
    uses, as `hf_datasets.prepare` scales it: the raw file and its prepared copy give the same input."""
    from hf_datasets.images import to_bits

    raw = gradient(dtype=np.uint16, top=3000)  # 12 bits used
    Image.fromarray(raw).save(tmp_path / "padchest.png")
    processor = unnormalised()
    from_raw = processor(Image.open(tmp_path / "padchest.png")).pixel_values[0, 0]
    prepared = processor(Image.fromarray(to_bits(raw, 16))).pixel_values[0, 0]
    assert torch.allclose(from_raw, torch.from_numpy(raw.astype(np.float32)) / 4095, atol=1e-6)
    assert torch.allclose(from_raw, prepared, atol=1 / 65535)
    as_int32 = Image.fromarray(gradient().astype(np.int32))  # mode "I": 8-bit content in a 32-bit mode
    assert torch.allclose(processor(as_int32).pixel_values, processor(Image.fromarray(gradient())).pixel_values)


def test_a_dim_16_bit_png_written_by_the_data_sets_is_read_at_the_depth_it_states():
    """A windowed DICOM whose brightest pixel is a third of white becomes a 16-bit PNG whose largest value uses 15
    bits: read by that rule it came out twice as bright as the DICOM itself (what `train.predict` gives the model).
    The PNG states its depth, so training on built or prepared sets sees the DICOM's own brightness."""
    import io

    from hf_datasets import images

    assert images.BIT_DEPTH_KEY == BIT_DEPTH_KEY  # the processor (a Hub file) cannot import hf_datasets
    dim = gradient(dtype=np.float64) / 255.0 / 3.0  # the windowed DICOM as read_dicom gives it: [0, 1/3]
    png = Image.open(io.BytesIO(images.encode_png(images.to_bits(dim, 16))))
    processor = unnormalised()
    expected = processor(dim.astype(np.float32)).pixel_values
    assert torch.allclose(processor(png).pixel_values, expected, atol=1 / 65535)
    assert not torch.allclose(processor(np.asarray(png)).pixel_values, expected, atol=0.1)  # no file, no statement
    assert torch.allclose(unnormalised(bit_depth=12)(png).pixel_values, expected, atol=1 / 65535)  # the file's own


def test_values_beyond_the_declared_bit_depth_are_refused():
    with pytest.raises(ValueError, match="0..4095"):
        unnormalised(bit_depth=12)(gradient(dtype=np.uint16, top=5000))


def test_a_bit_depth_for_wide_integers_leaves_8_bit_images_at_8_bits():
    """A processor saved with bit_depth=12 (a PadChest model) still reads 8-bit PNGs / JPEGs / arrays as 0..255:
    scaled by 4095 they came out nearly black."""
    expected = unnormalised()(gradient()).pixel_values
    processor = unnormalised(bit_depth=12)
    for image in (gradient(), Image.fromarray(gradient()), torch.from_numpy(gradient())):
        assert torch.equal(processor(image).pixel_values, expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_images_with_nan_or_inf_are_refused(bad):
    """They went through and gave NaN pixel values, so NaN probabilities, without a word."""
    array = gradient().astype(np.float32) / 255
    array[2, 3] = bad
    for image in (array, torch.from_numpy(array)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            unnormalised()(image)


def test_an_image_without_pixels_is_refused_as_such():
    with pytest.raises(ValueError, match="no pixels"):
        unnormalised()(np.zeros((0, 10), np.uint8))


def test_a_pil_image_is_turned_upright_as_its_exif_orientation_says(tmp_path):
    """A phone photo or scanner JPEG stored sideways with an Orientation tag: `Image.open` gives it to the processor
    as stored; it reached the model sideways, unlike the same file read by train.predict or `datasets`."""
    upright = Image.fromarray(gradient(8, 12))
    exif = Image.Exif()
    exif[Image.ExifTags.Base.Orientation] = 6  # stored turned 90 degrees anticlockwise: display turns it clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    expected = unnormalised(size=12)(upright).pixel_values
    assert torch.equal(unnormalised(size=12)(Image.open(tmp_path / "sideways.png")).pixel_values, expected)
    sideways = Image.open(tmp_path / "sideways.png")
    mask = sideways.point(lambda value: 255 if value > 127 else 0)  # drawn on the file: keeps its Orientation tag
    out = unnormalised(size=12)(sideways, segmentation_maps=mask)
    content = out.labels[0] != PAD_LABEL
    assert content.sum() == 8 * 12
    assert torch.equal(out.labels[0][content], (out.pixel_values[0, 0] > 127 / 255).long()[content])


@pytest.mark.parametrize("bit_depth", [0, 4, 24, 12.5, "12"])
def test_a_bit_depth_outside_8_to_16_bits_is_refused(bit_depth):
    """0 was ignored silently, 24 made every 16-bit image black, "12" (a YAML string) failed at the first image."""
    with pytest.raises(ValueError, match="bit_depth"):
        GroupMaskedViTImageProcessor(bit_depth=bit_depth)


def test_float_and_tensor_inputs():
    array = gradient().astype(np.float32) / 255
    from_numpy = unnormalised()(array).pixel_values
    from_tensor = unnormalised()(torch.from_numpy(array)[None]).pixel_values
    from_uint8_tensor = unnormalised()(torch.from_numpy(gradient())).pixel_values
    assert torch.allclose(from_numpy, from_tensor) and torch.allclose(from_numpy, from_uint8_tensor)


def test_boolean_images_are_0_and_1_as_a_pil_mode_1_image():
    binary = gradient() > 127
    from_pil = unnormalised()(Image.fromarray(binary)).pixel_values
    assert Image.fromarray(binary).mode == "1" and torch.equal(from_pil[0, 0], torch.from_numpy(binary).float())
    assert torch.equal(unnormalised()(binary).pixel_values, from_pil)
    assert torch.equal(unnormalised()(torch.from_numpy(binary)).pixel_values, from_pil)


def test_palette_images_with_alpha_are_read_as_their_colours():
    grey = Image.fromarray(gradient())
    expected = unnormalised()(grey).pixel_values
    assert torch.allclose(unnormalised()(grey.convert("PA")).pixel_values, expected, atol=1 / 255)


def test_rgb_and_rgba_become_grey_by_luminance_and_grey_becomes_three_channels():
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 0
    grey = unnormalised()(Image.fromarray(rgb)).pixel_values
    assert torch.allclose(grey, torch.full((1, 1, 8, 8), round(0.299 * 255) / 255))  # in 8-bit levels, as trained
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, dtype=np.uint8)], axis=2)
    assert torch.allclose(unnormalised()(Image.fromarray(rgba, "RGBA")).pixel_values, grey)
    three = unnormalised(num_channels=3)(Image.fromarray(gradient())).pixel_values
    assert three.shape == (1, 3, 8, 8) and torch.equal(three[:, 0], three[:, 2])


def test_batches_lists_and_stacks():
    images = [Image.fromarray(gradient()), gradient(), torch.from_numpy(gradient())]
    assert unnormalised()(images).pixel_values.shape == (3, 1, 8, 8)
    assert unnormalised()(np.stack([gradient()] * 4)).pixel_values.shape == (4, 1, 8, 8)
    assert unnormalised()(torch.stack([torch.from_numpy(gradient())[None]] * 5)).pixel_values.shape == (5, 1, 8, 8)


def test_channels_last_tensors_are_one_image():
    """A tensor made from an RGB or grey array, (H, W, C), is one image, as in other processors: not H images."""
    rgb = np.stack([gradient(6, 10), gradient(6, 10)[::-1], np.zeros((6, 10), dtype=np.uint8)], axis=-1)
    for array in (rgb, gradient(6, 10)[..., None]):
        expected = unnormalised()(array).pixel_values
        assert expected.shape == (1, 1, 8, 8)
        assert torch.equal(unnormalised()(torch.from_numpy(array)).pixel_values, expected)
        stacked = unnormalised()(torch.from_numpy(np.stack([array, array]))).pixel_values
        assert torch.equal(stacked, expected.expand(2, -1, -1, -1))


def test_input_data_format_says_where_the_channels_are():
    """Without `input_data_format`, a (3, H, W) tensor is one RGB image, as transformers' processors read it: three
    grey images stacked so become one, blended by luminance. Given, it says where the channels of tensors and arrays
    are (a string or transformers' ChannelDimension): a 3-D one is one image, a 4-D one a batch."""
    from transformers.image_utils import ChannelDimension

    greys = [gradient(), gradient()[::-1].copy(), np.zeros((8, 8), dtype=np.uint8)]
    processor = unnormalised()
    one_each = processor(greys).pixel_values
    rgb = processor(Image.fromarray(np.stack(greys, axis=-1))).pixel_values
    stack = torch.from_numpy(np.stack(greys))  # (3, 8, 8)
    assert one_each.shape == (3, 1, 8, 8) and rgb.shape == (1, 1, 8, 8)
    assert torch.allclose(processor(stack).pixel_values, rgb)
    assert torch.allclose(processor(stack, input_data_format="channels_first").pixel_values, rgb)
    assert torch.allclose(processor(stack.permute(1, 2, 0), input_data_format=ChannelDimension.LAST).pixel_values, rgb)
    assert torch.equal(processor(stack.numpy()).pixel_values, one_each)  # numpy: (H, W, C) or a stack of grey images
    assert torch.allclose(processor(stack.numpy(), input_data_format="channels_first").pixel_values, rgb)
    batch = torch.stack([stack.permute(1, 2, 0)] * 2)  # (2, 8, 8, 3): a tensor batch is (B, C, H, W) unless told
    assert torch.allclose(processor(batch, input_data_format="channels_last").pixel_values, rgb.expand(2, -1, -1, -1))
    assert torch.equal(processor(stack[:, None]).pixel_values, one_each)  # grey images as (B, 1, H, W)
    assert torch.equal(processor(greys, input_data_format="channels_first").pixel_values, one_each)  # (H, W): grey
    colour = Image.fromarray(np.stack(greys, axis=-1))  # a PIL image's layout is its own
    assert torch.equal(processor(colour, input_data_format="channels_first").pixel_values, rgb)
    with pytest.raises(ValueError, match=r"5 channels, not 1, 3 or 4; pass grey images as a list or a \(B, 1, H, W\)"):
        processor(torch.zeros(5, 8, 8), input_data_format="channels_first")
    with pytest.raises(ValueError, match="input_data_format must be one of"):
        processor(stack, input_data_format="first")
    with pytest.raises(ValueError, match=r"Got 1 images but 3 segmentation maps; a \(3, 8, 8\) Tensor is one image"):
        processor(stack, segmentation_maps=torch.zeros(3, 8, 8, dtype=torch.long))


def test_pad_keeps_aspect_and_squash_stretches():
    wide = np.full((10, 20), 255, dtype=np.uint8)
    padded = unnormalised(size=20)(wide).pixel_values[0, 0]
    assert torch.all(padded[5:15] == 1) and torch.all(padded[:5] == 0) and torch.all(padded[15:] == 0)
    squashed = unnormalised(size=20, resize_mode="squash")(wide).pixel_values[0, 0]
    assert torch.all(squashed == 1)


def test_normalisation_uses_cxr_statistics_by_default():
    processor = GroupMaskedViTImageProcessor(size=8)
    values = processor(np.full((8, 8), 255, dtype=np.uint8)).pixel_values
    assert torch.allclose(values, torch.full_like(values, (1 - CXR_MEAN) / CXR_STD))
    imagenet = GroupMaskedViTImageProcessor(size=8, num_channels=3, normalization="imagenet")
    assert imagenet.image_mean == [0.485, 0.456, 0.406]


def test_segmentation_maps_use_nearest_resizing_and_become_0_1():
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    out = unnormalised(size=8)(Image.fromarray(gradient(16, 16)), segmentation_maps=Image.fromarray(mask))
    assert out.labels.shape == (1, 8, 8) and out.labels.dtype == torch.int64
    assert set(out.labels.unique().tolist()) == {0, 1}
    assert out.labels[0, 2:6, 1:5].eq(1).all() and out.labels.sum() == 16


def test_stacked_segmentation_maps_pair_with_stacked_images():
    """A (B, H, W) stack of masks is B masks whatever B is (3 masks were read as one 3-channel mask)."""
    for count in (2, 3, 4):
        masks = torch.zeros(count, 8, 8, dtype=torch.long)
        masks[:, 2:6, 2:6] = 1
        for images, maps in ((torch.rand(count, 1, 8, 8), masks), (np.stack([gradient()] * count), masks.numpy())):
            labels = unnormalised()(images, segmentation_maps=maps).labels
            assert labels.shape == (count, 8, 8) and torch.equal(labels, masks)


def test_post_processing_removes_padding_and_restores_the_original_size():
    processor = unnormalised(size=16)
    mask = np.zeros((8, 16), dtype=np.uint8)
    mask[:, :8] = 1
    labels = processor(np.zeros((8, 16), dtype=np.uint8), segmentation_maps=mask).labels
    lungs = torch.where(labels[:, None] == 1, 5.0, -5.0)  # a perfect prediction, one label (sigmoid)
    one_label = processor.post_process_instance_segmentation({"logits": lungs}, target_sizes=[(8, 16)])[0]
    two_labels = processor.post_process_semantic_segmentation(  # background and lungs (softmax)
        {"logits": torch.cat([-lungs, lungs], 1)}, target_sizes=[(8, 16)])[0]
    for restored in (one_label["segmentation"], two_labels):
        assert restored.shape == (8, 16) and torch.equal(restored, torch.from_numpy(mask).long())


def test_a_one_label_segmenter_has_no_semantic_map_and_says_what_to_use():
    """The image-segmentation pipeline's subtask="semantic" names each value of the map by id2label: a one-label
    model's 0/1 map named its background "lungs" (id 0) and failed on its lungs (1) with a bare KeyError."""
    with pytest.raises(ValueError, match="one-label.*subtask='instance'"):
        unnormalised(size=16).post_process_semantic_segmentation({"logits": torch.zeros(1, 1, 16, 16)})


def test_the_pipelines_mask_threshold_sets_a_binary_segmenters_pixel_cut():
    """pipeline("image-segmentation", mask_threshold=0.9) returned the same lungs as 0.5: the value was dropped."""
    processor = unnormalised(size=16)
    logits = torch.zeros(1, 1, 16, 16)
    logits[..., :8] = 1.0  # probability 0.73 on the left half, 0.5 on the right
    default, strict = (processor.post_process_instance_segmentation({"logits": logits}, **cut)[0]
                       for cut in ({}, {"mask_threshold": 0.9}))
    assert default["segmentation"][:, :8].eq(1).all() and default["segmentation"][:, 8:].eq(0).all()
    assert strict["segmentation"].eq(0).all() and strict["segments_info"] == []


def test_the_pipelines_threshold_drops_masks_of_an_uncertain_class_but_not_weak_lungs():
    """pipeline("image-segmentation", threshold=...) was ignored. As in DETR's and MaskFormer's post-processing it
    drops the masks whose class (which structure) the model is unsure of; how sure it is that a pixel shows any
    structure is `mask_threshold`'s, so weak lungs survive the pipeline's default threshold, 0.9."""
    processor = unnormalised(size=16)
    logits = torch.zeros(1, 3, 16, 16)  # background, lungs, heart
    logits[:, 1, :, :8] = 6.0  # left half: surely lungs
    logits[:, 1, :, 8:], logits[:, 2, :, 8:] = 2.0, 2.2  # right half: a structure, heart by a hair over lungs
    strict, lenient = (processor.post_process_instance_segmentation({"logits": logits}, threshold=cut)[0]
                       for cut in (0.9, 0.5))
    assert [segment["label_id"] for segment in strict["segments_info"]] == [1]
    assert [segment["label_id"] for segment in lenient["segments_info"]] == [1, 2]
    heart = lenient["segments_info"][1]
    share = torch.tensor(0.2).sigmoid()  # p(heart) / p(heart or lungs) = e^2.2 / (e^2 + e^2.2)
    assert heart["score"] == pytest.approx(float(share * logits[0, :, 0, 15].softmax(0)[2]), rel=1e-5)

    weak_one_label = torch.full((1, 1, 16, 16), 0.05)  # probability 0.51 everywhere
    weak_two_labels = torch.stack([torch.zeros(1, 16, 16), torch.full((1, 16, 16), 0.4)], 1)  # lungs 0.6
    for weak, label, probability in ((weak_one_label, 0, 0.5125), (weak_two_labels, 1, 0.5987)):
        (segment,) = processor.post_process_instance_segmentation({"logits": weak}, threshold=0.9)[0]["segments_info"]
        assert segment["label_id"] == label and segment["score"] == pytest.approx(probability, abs=1e-4)


def test_the_image_segmentation_pipeline_passes_threshold_on(tmp_path):
    """The real pipeline: its default keeps a weak one-label model's lungs and drops a mask whose class a
    three-label model cannot tell apart; a lower `threshold` keeps that one too."""
    from transformers import pipeline

    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForSegmentation

    image = Image.fromarray(gradient(32, 32))
    found = {}
    for name, bias in (("one", [0.05]), ("three", [0.0, 1.0, 1.2])):
        names = ["lungs"] if len(bias) == 1 else ["background", "lungs", "heart"]
        model = GroupMaskedViTForSegmentation(GroupMaskedViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=len(bias), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}))
        with torch.no_grad():  # the same logits at every pixel
            model.segmentation_head.classifier.weight.zero_()
            model.segmentation_head.classifier.bias.copy_(torch.tensor(bias))
        model.save_pretrained(tmp_path / name)
        unnormalised(size=32).save_pretrained(tmp_path / name)
        segment = pipeline("image-segmentation", model=str(tmp_path / name))
        found[name] = [[result["label"] for result in segment(image, **cut)] for cut in ({}, {"threshold": 0.5})]
    assert found == {"one": [["lungs"], ["lungs"]], "three": [[], ["heart"]]}


def test_a_mask_stored_at_another_size_than_its_image_lines_up_with_it():
    """Lung masks are often saved at another resolution than their images (SCR's 1024 px masks of JSRT's 2048 px
    images): the mask covers the whole image, so it is padded with it (it was padded as an image of its own)."""
    processor = unnormalised(size=16)
    image = np.zeros((8, 16), dtype=np.uint8)  # landscape: padded above and below
    at_image_size = np.zeros((8, 16), dtype=np.uint8)
    at_image_size[2:6, 2:6] = 255
    twice = np.zeros((16, 32), dtype=np.uint8)  # the same lung, saved at twice the resolution
    twice[4:12, 4:12] = 255
    expected = processor(image, segmentation_maps=at_image_size).labels
    assert expected[0, :4].eq(255).all() and expected[0, 12:].eq(255).all()
    for mask in (twice, Image.fromarray(twice), torch.from_numpy(twice), twice[::4, ::4]):
        assert torch.equal(processor(image, segmentation_maps=mask).labels, expected)
    portrait = np.zeros((16, 8), dtype=np.uint8)
    labels = processor(portrait, segmentation_maps=twice.T).labels  # padded left and right, as the image is
    assert labels[0, :, :4].eq(255).all() and labels[0, :, 12:].eq(255).all() and labels[0, 2:6, 6:10].eq(1).all()
    assert torch.equal(labels, processor(portrait, segmentation_maps=at_image_size.T).labels)


def test_a_mask_of_another_shape_than_its_image_is_refused_naming_both_sizes():
    """A square mask of a landscape image (the mask of another image, or of a cropped copy) was stretched onto it,
    off the lungs, as data building and preparation refuse to; a mask rounded to another resolution still fits."""
    processor = unnormalised(size=16)
    image = np.zeros((8, 16), dtype=np.uint8)
    square = np.zeros((16, 16), dtype=np.uint8)
    square[4:12, 2:6] = 255
    for mask in (square, Image.fromarray(square), torch.from_numpy(square)):
        with pytest.raises(ValueError, match="segmentation map of 16x16 pixels for an image of 16x8: another shape"):
            processor(image, segmentation_maps=mask)
    with pytest.raises(ValueError, match="map of 16x16 pixels for an image of 16x8"):  # the second pair of a batch
        processor([square, image], segmentation_maps=[square, square])
    rounded = np.zeros((50, 100), dtype=np.uint8)  # half of a 201 x 100 image, rounded down
    assert processor(np.zeros((100, 201), dtype=np.uint8), segmentation_maps=rounded).labels.shape == (1, 16, 16)


def test_masks_with_grey_edges_are_lung_inside_not_ignored(tmp_path):
    """A 0/255 lung mask drawn anti-aliased, resized bilinearly or saved as JPEG has grey edge values: its 255 pixels
    are lung (they were taken for the ignore label 255, and the edge greys for class indices)."""
    from PIL import ImageDraw

    big = Image.new("L", (128, 96), 0)
    ImageDraw.Draw(big).ellipse((16, 16, 112, 80), fill=255)
    binary = np.array(big.resize((32, 24), Image.Resampling.NEAREST))
    smooth = big.resize((32, 24), Image.Resampling.BILINEAR)  # the same lung, grey at its edge
    big.save(tmp_path / "mask.jpg", quality=85)
    jpeg = Image.open(tmp_path / "mask.jpg")
    assert len(np.unique(np.array(smooth))) > 2 and len(np.unique(np.array(jpeg))) > 2
    processor = unnormalised(size=16)
    image = np.zeros((24, 32), dtype=np.uint8)
    expected = processor(image, segmentation_maps=binary).labels
    for mask in (smooth, np.array(smooth), jpeg):
        labels = processor(image, segmentation_maps=mask).labels
        assert set(labels.unique().tolist()) == {0, 1, 255}
        assert labels.ne(expected).sum() <= 4 and labels.eq(1).sum() >= expected.eq(1).sum() - 4
    label_map = np.zeros((24, 32), dtype=np.uint8)  # class indices with an ignore region stay as they are
    label_map[4:12, 4:12], label_map[12:20, 4:12], label_map[:, 28:] = 1, 2, 255
    assert set(processor(image, segmentation_maps=label_map).labels.unique().tolist()) == {0, 1, 2, 255}


def test_colour_and_grey_alpha_mask_images_are_read_as_the_data_builders_read_them():
    """A lung mask drawn in colour (red on black: grey 76) gave labels 76, no lung for a one-label model's loss and
    Dice; one saved as grey + alpha (LA) was refused as a 2-channel map. Both are lung wherever they are not black."""
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 2:10] = 255
    image = np.zeros((16, 16), dtype=np.uint8)
    processor = unnormalised(size=8)
    expected = processor(image, segmentation_maps=mask).labels
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = mask
    drawn = [Image.fromarray(red), Image.fromarray(np.dstack([red, mask])), Image.fromarray(np.dstack([mask, mask]))]
    assert [m.mode for m in drawn] == ["RGB", "RGBA", "LA"]
    for colour in drawn:
        assert torch.equal(processor(image, segmentation_maps=colour).labels, expected)


def test_a_16_bit_0_65535_mask_is_lung_where_white(tmp_path):
    """A mask saved as a 16-bit PNG (0 / 65535) gave labels 65535: no lung for a one-label model's loss and Dice."""
    mask = np.zeros((16, 16), dtype=np.uint16)
    mask[4:12, 2:10] = 65535
    Image.fromarray(mask).save(tmp_path / "mask.png")
    image = np.zeros((16, 16), dtype=np.uint8)
    processor = unnormalised(size=8)
    expected = processor(image, segmentation_maps=(mask > 0).astype(np.uint8)).labels
    assert torch.equal(processor(image, segmentation_maps=Image.open(tmp_path / "mask.png")).labels, expected)
    assert torch.equal(processor(image, segmentation_maps=mask).labels, expected)


def test_a_label_map_of_one_class_and_an_ignore_region_is_not_read_as_a_0_255_mask():
    """{1, 255} (lung and an ignore region, no background) was taken for a 0/255 mask: the lung became background
    and the ignored region lung."""
    processor = unnormalised(size=16)
    label_map = np.ones((16, 16), dtype=np.uint8)
    label_map[:, 12:] = 255
    labels = processor(np.zeros((16, 16), dtype=np.uint8), segmentation_maps=label_map).labels[0]
    assert labels[:, :12].eq(1).all() and labels[:, 12:].eq(255).all()
    white = np.full((16, 16), 255, dtype=np.uint8)  # a 0/255 mask that is all lung stays lung
    assert processor(np.zeros((16, 16), dtype=np.uint8), segmentation_maps=white).labels.eq(1).all()


def test_padded_mask_pixels_are_ignored_and_left_out_of_dice():
    from train.engine import mask_counts

    mask = np.zeros((4, 8), dtype=np.uint8)
    mask[:, :4] = 1
    labels = unnormalised(size=8)(np.zeros((4, 8), dtype=np.uint8), segmentation_maps=mask).labels
    assert labels[0, :2].eq(255).all() and labels[0, 6:].eq(255).all() and labels[0, 2:6].le(1).all()
    counts = mask_counts(torch.full((1, 1, 8, 8), 5.0), labels)  # foreground predicted on every pixel
    assert [int(counts[key]) for key in ("intersection", "predicted", "target")] == [16, 32, 16]


@pytest.mark.parametrize("bad, error, message", [
    (np.full((8, 8), 2.0, dtype=np.float32), ValueError, r"\[0, 1\]"),
    ([np.zeros((8, 8, 2), dtype=np.uint8)], ValueError, "C in 1, 3, 4"),
    (np.zeros((2, 2, 8, 8, 1), dtype=np.uint8), ValueError, "2 or 3 dimensions"),
    ("chest.png", TypeError, "Unsupported image type"),
    (np.zeros((8, 8), dtype=np.complex64), TypeError, "dtype"),
])
def test_bad_inputs_get_clear_errors(bad, error, message):
    with pytest.raises(error, match=message):
        unnormalised()(bad)


def test_equalisation_ignores_exposure_and_matches_8_bit_histogram_equalisation():
    rng = np.random.default_rng(0)
    image = rng.integers(20, 200, (12, 10)).astype(np.uint8)
    # another detector and exposure: 16 bits, gamma 2, same order of values
    brighter = (65535 * (image / 255.0) ** 2).round().astype(np.uint16)
    equalized = unnormalised(size=12, equalize=True)
    out = equalized(image).pixel_values
    assert torch.allclose(out, equalized(brighter).pixel_values, rtol=0, atol=0.5 / 255 + 1e-6)  # the 8-bit one: 8 bits
    assert not torch.allclose(unnormalised(size=12)(image).pixel_values, unnormalised(size=12)(brighter).pixel_values,
                              rtol=0, atol=0.5 / 255)
    cdf = np.cumsum(np.bincount(image.ravel(), minlength=256)) / image.size  # classic: pixel -> cdf(pixel), 8 bits
    height, width, top, left = equalized._geometry(12, 10)
    assert np.allclose(out[0, 0, top:top + height, left:left + width].numpy(), np.round(cdf[image] * 255) / 255,
                       atol=1e-6)
    assert out[0, 0, :, :left].eq(0).all()  # the padding stays black, outside the equalisation


@pytest.mark.parametrize("size, side", [({"height": 48, "width": 48}, 48), ({"shortest_edge": 40}, 40)])
def test_size_from_other_processors_configs_is_one_square_side(size, side):
    assert GroupMaskedViTImageProcessor(size=size)(gradient()).pixel_values.shape == (1, 1, side, side)


@pytest.mark.parametrize("size", [{"height": 48, "width": 64}, {"longest_edge": 64}])
def test_sizes_that_are_not_one_square_side_are_refused(size):
    with pytest.raises(ValueError, match="size must be"):
        GroupMaskedViTImageProcessor(size=size)


def test_save_and_load(tmp_path):
    processor = GroupMaskedViTImageProcessor(size=64, num_channels=3, resize_mode="squash", bit_depth=12,
                                             equalize=True)
    processor.save_pretrained(tmp_path)
    loaded = GroupMaskedViTImageProcessor.from_pretrained(tmp_path)
    assert (loaded.size, loaded.num_channels, loaded.resize_mode, loaded.bit_depth) == (64, 3, "squash", 12)
    assert loaded.equalize and not GroupMaskedViTImageProcessor().equalize
    array = gradient(dtype=np.uint16, top=4095)
    assert torch.equal(processor(array).pixel_values, loaded(array).pixel_values)


def test_settings_given_to_from_pretrained_are_checked_and_complete(tmp_path, caplog):
    """`from_pretrained(folder, equalize=True, num_channels=3)` builds the processor with those settings, as the
    constructor would (the saved grey mean serves the three channels); a wrong value is refused naming it."""
    from transformers import AutoImageProcessor

    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path)
    caplog.clear()
    loaded = AutoImageProcessor.from_pretrained(tmp_path, num_channels=3, equalize=True)
    assert (loaded.num_channels, loaded.equalize, loaded.size) == (3, True, 32)
    assert loaded.image_mean == [0.520] * 3 and len(loaded.image_std) == 3
    assert loaded(gradient()).pixel_values.shape == (1, 3, 32, 32)
    assert not [r for r in caplog.records if "backward compatibility" in r.getMessage()]
    with pytest.raises(ValueError, match="resize_mode"):
        AutoImageProcessor.from_pretrained(tmp_path, resize_mode="crop")


def test_tinted_16_bit_colour_png_whitezero_tiff_and_turned_tiff_read_alike_everywhere(tmp_path):
    """A tinted 16-bit colour PNG (red up to 4094, its grey up to ~1900) was scaled by the grey's 11 bits: twice as
    bright as the same pixels as an array. A 16-bit TIFF storing white as 0 was read inverted by every path. An
    uncompressed TIFF turned by its EXIF Orientation was scrambled by the data sets' (Pillow 13, by name), and its
    upright size taken as turned twice, refusing its mask."""
    import sys
    from pathlib import Path

    import datasets

    from hf_datasets import build_dataset
    from hf_datasets.images import read_grey, upright_size
    from train.predict import read_image

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_png16

    processor = GroupMaskedViTImageProcessor(size=32, do_normalize=False)
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 4095, (40, 32)).astype(np.uint16)
    picture[0, 0] = 4094
    tinted = np.stack([picture, picture // 4, picture // 8], axis=-1)
    write_png16(tmp_path / "tinted.png", tinted)
    expected = processor(images=[tinted], return_tensors="pt")["pixel_values"]
    for given in (Image.open(tmp_path / "tinted.png"), read_image(tmp_path / "tinted.png")):
        torch.testing.assert_close(processor(images=[given], return_tensors="pt")["pixel_values"], expected,
                                   atol=1e-3, rtol=0)

    grey = (picture.astype(np.uint32) * 16).astype(np.uint16)
    Image.fromarray(65535 - grey).save(tmp_path / "white_is_zero.tif", tiffinfo={262: 0})
    np.testing.assert_array_equal(read_grey(tmp_path / "white_is_zero.tif"), grey)
    expected = processor(images=[grey], return_tensors="pt")["pixel_values"]
    for given in (Image.open(tmp_path / "white_is_zero.tif"), read_image(tmp_path / "white_is_zero.tif")):
        torch.testing.assert_close(processor(images=[given], return_tensors="pt")["pixel_values"], expected)

    upright = (picture // 16).astype(np.uint8)
    turned = Image.fromarray(np.rot90(upright, 1).copy())  # Orientation 6: turn 90 degrees clockwise to show it
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "set" / "normal").mkdir(parents=True)
    turned.save(tmp_path / "set" / "normal" / "turned.tif", exif=exif.tobytes())
    assert upright_size(tmp_path / "set" / "normal" / "turned.tif") == (32, 40)
    np.testing.assert_array_equal(read_grey(tmp_path / "set" / "normal" / "turned.tif"), upright)
    Image.fromarray(grey).save(tmp_path / "set" / "normal" / "white_is_zero.tif")
    Image.fromarray(65535 - grey).save(tmp_path / "set" / "normal" / "white_is_zero.tif", tiffinfo={262: 0})
    ds = build_dataset("imagefolder", tmp_path / "set", split_fractions={"train": 1.0}, bits=16)["train"]
    images = {path.split("/")[-1]: np.asarray(image) for path, image in zip(ds["path"], ds["image"])}
    assert isinstance(ds.features["image"], datasets.Image)
    np.testing.assert_array_equal(images["turned.tif"] // 257, upright)  # decoded here: a 16-bit PNG of the file
    assert np.corrcoef(images["white_is_zero.tif"].ravel(), grey.ravel())[0, 1] > 0.99


def test_a_32_bit_image_beyond_16_bits_is_refused_by_the_data_sets_as_by_the_processor(tmp_path):
    """The data sets clipped it (70% of a real one's pixels became white), the processor refused it."""
    from hf_datasets.errors import ImageReadError
    from hf_datasets.images import read_grey

    Image.fromarray(np.array([[0, 131008], [5, 7]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match="wide.tif: 32-bit integer image with values outside 0..65535"):
        read_grey(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match="32-bit integer image with values outside 0..65535"):
        unnormalised()(images=[Image.open(tmp_path / "wide.tif")])
