"""ageest.data.imageio.load_rgb: every mode decoded as a viewer shows it; each file made in the test."""

import numpy as np
import pytest
from PIL import Image

from ageest.errors import DataError
from ageest.data.imageio import GREY, MAX_PIXELS, load_rgb

ORIENTATION = 0x0112  # the EXIF tag


def _ramp(h=24, w=40):
    """An 8-bit RGB gradient with every channel different, so rotations and swaps show."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 6, y * 10, (x + y) * 4], axis=2).clip(0, 255).astype(np.uint8)


def test_exif_orientation_6_comes_out_upright(tmp_path):
    upright = _ramp()
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what a phone held upright writes
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to show"
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    out = load_rgb(tmp_path / "phone.png")
    assert out.shape == upright.shape and np.array_equal(out, upright)


def test_16_bit_png_is_its_8_bit_twin(tmp_path):
    grey8 = _ramp()[..., 0]
    Image.fromarray(grey8).save(tmp_path / "8.png")
    im16 = Image.frombytes("I;16", grey8.shape[::-1], (grey8.astype("<u2") * 257).tobytes())
    im16.save(tmp_path / "16.png")
    with Image.open(tmp_path / "16.png") as check:
        assert check.mode == "I;16"  # the file really is 16-bit
    assert np.array_equal(load_rgb(tmp_path / "16.png"), load_rgb(tmp_path / "8.png"))
    assert load_rgb(tmp_path / "16.png").max() < 255  # not the white square of clipping


def test_16_bit_big_endian_and_rounding():
    v = np.array([[0, 128, 129, 32767, 65535]], dtype=">u2")
    from ageest.data.imageio import to_rgb8

    out = to_rgb8(Image.frombytes("I;16B", (5, 1), v.tobytes()))
    assert out.shape == (1, 5, 3) and out[0, :, 0].tolist() == [0, 0, 1, 127, 255]


def test_32_bit_integer_by_its_range(tmp_path):
    v = np.array([[0, 2**30, 2**31 - 1, -5, 255]], dtype=np.int32)
    Image.fromarray(v).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as check:
        assert check.mode == "I"
    assert load_rgb(tmp_path / "i.tif")[0, :, 1].tolist() == [0, 128, 255, 0, 0]


def test_float_zero_to_one(tmp_path):
    v = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]], dtype=np.float32)
    Image.fromarray(v).save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as check:
        assert check.mode == "F"
    assert load_rgb(tmp_path / "f.tif")[0, :, 2].tolist() == [0, 128, 255, 255, 0, 0]


def test_palette_transparency_is_grey(tmp_path):
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0  # palette entry 0 (red) is transparent
    im.save(tmp_path / "p.png", transparency=0)
    out = load_rgb(tmp_path / "p.png")
    assert out[0, 1].tolist() == [0, 0, 255]
    assert out[0, 0].tolist() == out[1, 3].tolist() == [GREY] * 3


@pytest.mark.parametrize("mode, pixels", [
    ("RGBA", [(10, 200, 30, 255), (250, 0, 0, 0), (200, 100, 0, 128)]),
    ("LA", [(10, 255), (250, 0), (200, 128)]),
])
def test_alpha_composited_on_grey(tmp_path, mode, pixels):
    im = Image.new(mode, (3, 1))
    for x, p in enumerate(pixels):
        im.putpixel((x, 0), p)
    im.save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")[0]
    opaque, clear, half = (np.array(p[:-1] * (3 if mode == "LA" else 1)) for p in pixels)
    assert out[0].tolist() == opaque.tolist()  # opaque: exact
    assert out[1].tolist() == [GREY] * 3  # transparent: the background, not the hidden colour
    assert np.abs(out[2] - (half * 128 + GREY * 127) / 255).max() <= 1


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (3, 1))
    for x, p in enumerate([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)]):
        im.putpixel((x, 0), p)
    im.save(tmp_path / "c.tif")
    assert load_rgb(tmp_path / "c.tif")[0].tolist() == [[255, 255, 255], [0, 0, 0], [0, 255, 255]]


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path):
    # 14000 x 14000 one-bit pixels: 24 MB in memory, a few kB on disk, 196 megapixels decoded.
    Image.new("1", (14000, 14000)).save(tmp_path / "bomb.png")
    with pytest.raises(DataError, match=r"bomb\.png: 14000 x 14000 pixels is more than the limit of 64 "
                                         r"megapixels \(a guard against decompression bombs"):
        load_rgb(tmp_path / "bomb.png")
    assert MAX_PIXELS == 64 * 2**20


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    Image.new("L", (9, 9)).save(tmp_path / "small.png")
    assert load_rgb(tmp_path / "small.png", max_pixels=81).shape == (9, 9, 3)
    with pytest.raises(DataError, match="9 x 9 pixels is more than the limit"):
        load_rgb(tmp_path / "small.png", max_pixels=80)


@pytest.mark.parametrize("content, why", [(b"not an image", "cannot identify"), (None, "Truncated")])
def test_undecodable_file_is_one_line(tmp_path, content, why):
    p = tmp_path / "001A02.JPG"
    if content is None:
        Image.fromarray(_ramp(200, 200)).save(p, quality=90)
        content = p.read_bytes()[:600]
    p.write_bytes(content)
    with pytest.raises(DataError, match=rf"001A02\.JPG: cannot decode image \(.*{why}"):
        load_rgb(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.jpg: file not found"):
        load_rgb(tmp_path / "nope.jpg")


def test_cache_and_plain_pipeline_decode_through_it(tmp_path):
    """A data set of rotated 16-bit PNGs (EXIF Orientation 6) trains on the pixels of its upright
    8-bit twin, in the cache (`ageest prepare`) and in the plain pipeline alike."""
    import torch

    from ageest.pipeline.cache import build_array
    from ageest.config import Config
    from ageest.pipeline.sources import PlainSource
    from ageest.data.fgnet import scan_images

    exif = Image.Exif()
    exif[ORIENTATION] = 6
    for folder in ("8", "16"):
        (tmp_path / folder).mkdir()
    for i, age in enumerate((2, 30)):
        grey = _ramp(48 + 8 * i, 64)[..., i]
        Image.fromarray(grey).save(tmp_path / "8" / f"001A{age:02d}.png")
        stored = np.ascontiguousarray(np.rot90(grey, 1)).astype("<u2") * 257
        Image.frombytes("I;16", stored.shape[::-1], stored.tobytes()).save(
            tmp_path / "16" / f"001A{age:02d}.png", exif=exif)
    config = Config(image_size=32, pretrained="none", device="cpu")
    cpu = torch.device("cpu")
    eight, sixteen = (scan_images(tmp_path / f) for f in ("8", "16"))
    assert np.array_equal(build_array(sixteen, config, None, workers=1)[0],
                          build_array(eight, config, None, workers=1)[0])
    views = [torch.cat([x for x, _ in PlainSource(r, config, cpu, workers=0).eval_batches()])
             for r in (eight, sixteen)]
    assert torch.equal(*views)
