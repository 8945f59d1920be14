import numpy as np
import pytest
from PIL import Image

from morphtools.cutouts import CutoutError
from morphtools.preprocessing import (
    PreprocessingParams,
    colour_to_model_input,
    dr2_style_rgb,
    fits_to_colour_image,
    image_to_crop,
    resize_grey,
)


def grey_cube(k, size=64):
    """Fluxes that land on the same value k in every colour plane (g/0.008 = r/0.014 = z/0.019)."""
    cube = np.empty((3, size, size), np.float32)
    cube[0], cube[1], cube[2] = 0.008 * k, 0.014 * k, 0.019 * k
    return cube


def test_dr2_colour_against_hand_computation():
    # (asinh(10) - asinh(-0.5)) / (asinh(300) - asinh(-0.5)) = (2.99822 + 0.48121) / (6.39693 + 0.48121)
    rgb = dr2_style_rgb(grey_cube(10.0))
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(rgb, 0.505866, atol=1e-5)
    # zero flux sits at asinh(0.5) / 6.87814 of the range: the dark sky level, 18 of 255
    rgb0 = dr2_style_rgb(np.zeros((3, 8, 8)))
    assert round(float(rgb0[0, 0, 0]) * 255) == 18


def test_desaturation_pulls_single_colour_pixels_to_grey():
    cube = grey_cube(0.0, 8)
    cube[0] = 0.008 * 50  # only the blue plane is bright
    rgb = dr2_style_rgb(cube)
    no_desat = dr2_style_rgb(cube, desaturate=False)
    spread = lambda x: x.max(axis=2) - x.min(axis=2)  # noqa: E731
    assert (spread(rgb) < spread(no_desat)).all()


def test_full_chain_shapes_values_and_flip():
    params = PreprocessingParams()
    cube = grey_cube(10.0, 150)
    rgb = fits_to_colour_image(cube)
    assert rgb.shape == (424, 424, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == 129)  # round(0.505866 * 255)
    crop, thumb = colour_to_model_input(rgb, params)
    assert crop.shape == (300, 300) and crop.dtype == np.uint8
    assert thumb.shape == (128, 128, 3)
    assert np.all(crop == 129)
    # FITS row 0 is the bottom of the sky image: after the flip it is the last image row
    cube = grey_cube(0.0, 150)
    cube[:, :10, :] = grey_cube(100.0, 150)[:, :10, :]
    rgb = fits_to_colour_image(cube)
    assert rgb[-1].mean() > 200 and rgb[0].mean() < 30


def test_resize_grey_keeps_the_galaxy_centred():
    grey = np.zeros((424, 424), np.float32)
    grey[212 - 20: 212 + 20, 212 - 20: 212 + 20] = 255
    small = resize_grey(grey, 300)
    assert small.shape == (300, 300) and small.dtype == np.uint8
    assert small[150 - 5: 150 + 5, 150 - 5: 150 + 5].min() == 255 and small[0, 0] == 0
    assert resize_grey(grey, 86).shape == (86, 86)


def test_sizes_must_nest():
    with pytest.raises(ValueError, match="crop_to <= resize_to"):
        PreprocessingParams(resize_to=200, crop_to=224)


def test_jpeg_path_and_bad_jpeg(tmp_path):
    params = PreprocessingParams()
    img = np.full((424, 424, 3), 90, np.uint8)
    Image.fromarray(img).save(tmp_path / "1.jpg", quality=95)
    crop, _ = image_to_crop(str(tmp_path / "1.jpg"), "jpeg", params)
    assert abs(int(crop.mean()) - 90) <= 1
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CutoutError, match="2.jpg"):
        image_to_crop(str(tmp_path / "2.jpg"), "jpeg", params)
    with pytest.raises(CutoutError, match="missing"):
        image_to_crop(str(tmp_path / "3.jpg"), "jpeg", params)


def test_bad_cutouts_are_recorded_and_the_shard_completes(tmp_path):
    import pandas as pd

    from morphtools.cutouts import write_fits_atomic
    from morphtools.preprocessing import preprocess_shard

    write_fits_atomic(tmp_path / "good.fits", grey_cube(10.0, 100))
    write_fits_atomic(tmp_path / "trunc.fits", grey_cube(10.0, 100))
    data = (tmp_path / "trunc.fits").read_bytes()
    (tmp_path / "trunc.fits").write_bytes(data[:4000])
    write_fits_atomic(tmp_path / "blank.fits", np.zeros((3, 100, 100), np.float32))
    write_fits_atomic(tmp_path / "twoband.fits", grey_cube(10.0, 100)[:2])
    manifest = pd.DataFrame({
        "galaxy_id": ["good", "trunc", "blank", "twoband", "missing", "nofetch"],
        "path": [str(tmp_path / f"{n}.fits") for n in ["good", "trunc", "blank", "twoband", "missing"]] + [""],
        "status": ["fetched"] * 5 + ["rejected"],
        "reason": [""] * 5 + ["nofetch: HTTPError: 500"],
    })
    ids, crops, _, qa = preprocess_shard(manifest, PreprocessingParams(), "fits")
    assert list(ids) == ["good"] and crops.shape == (1, 300, 300)  # stored at resize_to
    reasons = dict(zip(qa["galaxy_id"], qa["reason"], strict=True))
    assert qa.set_index("galaxy_id").loc["good", "status"] == "ok"
    assert "trunc.fits" in reasons["trunc"]
    assert "blank" in reasons["blank"] and "expected 3 bands, got 2" in reasons["twoband"]
    assert "missing" in reasons["missing"] and "HTTPError" in reasons["nofetch"]
    assert (qa.set_index("galaxy_id").loc[["trunc", "blank", "twoband", "missing"], "stage"] == "preprocess").all()
