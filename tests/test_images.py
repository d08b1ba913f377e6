"""Bad image input: each gets a clear error naming the file, or is converted and used."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmgpt2.images import ImageError, iter_images, load_image


def test_missing_path_names_the_file(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: no such file"):
        load_image(tmp_path / "nope.png")


def test_text_file_named_jpg_is_refused_by_name(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("hello, I am not a picture")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image"):
        load_image(fake)


def test_truncated_jpeg_is_reported_as_corrupt(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
        good, quality=95
    )
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        load_image(cut)


@pytest.mark.parametrize(
    "mode, array",
    [
        ("L", np.full((20, 30), 128, np.uint8)),
        ("RGBA", np.dstack([np.full((20, 30, 3), 200, np.uint8), np.full((20, 30), 0, np.uint8)])),
        ("I;16", np.linspace(0, 65535, 600, dtype=np.uint16).reshape(20, 30)),
    ],
)
def test_other_modes_become_rgb(tmp_path, mode, array):
    path = tmp_path / f"{mode.replace(';', '')}.png"
    Image.fromarray(array, mode if mode != "I;16" else None).save(path)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (30, 20)
    if mode == "RGBA":  # fully transparent pixels are composited on white, not black
        assert im.getpixel((0, 0)) == (255, 255, 255)
    if mode == "I;16":  # 16-bit range is rescaled, not clipped to 255
        arr = np.asarray(im)[..., 0]
        assert arr.min() == 0 and arr.max() == 255


def test_palette_png_becomes_rgb(tmp_path):
    path = tmp_path / "pal.png"
    Image.new("RGB", (10, 10), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    assert load_image(path).getpixel((5, 5)) == (10, 200, 30)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 MP, a few KB on disk
    with pytest.raises(ImageError, match=r"bomb\.png: .*decompression.bomb"):
        load_image(path)


def test_one_bad_file_in_a_batch_is_reported_and_the_rest_kept(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8)).save(p)
        paths.append(p)
    (tmp_path / "1.png").write_bytes(b"garbage")
    results = list(iter_images(paths))
    assert [r[1] is not None for r in results] == [True, False, True]
    assert "1.png" in results[1][2]
