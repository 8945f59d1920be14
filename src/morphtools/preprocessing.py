"""From survey pixels to what the CNN sees.

FITS grz cube -> GZ DECaLS "dr2 style" colour image (424 x 424 uint8 RGB) -> greyscale
(mean of the channels) -> resize 424 -> 300, stored as uint8. GZ2 JPEGs enter at the
colour-image step. The crop 300 -> 224 happens when the network reads the images: a random
crop (with random rotations and flips) in training, the centre crop at inference
(:mod:`morphtools.pretraining`), so the stored images keep the margin augmentation needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# band -> (RGB plane, nanomaggies per unit), as GZ DECaLS made its images
DR2_SCALES = {"g": (2, 0.008), "r": (1, 0.014), "z": (0, 0.019)}
DR2_LIMITS = (-0.5, 300.0)


@dataclass(frozen=True)
class PreprocessingParams:
    """Sizes in pixels: colour images at ``image_size``, stored greyscale images at
    ``resize_to``, the network's input ``crop_to`` (cropped from the stored image)."""

    image_size: int = 424
    resize_to: int = 300
    crop_to: int = 224
    thumbnail_size: int = 128

    def __post_init__(self):
        if not self.crop_to <= self.resize_to <= self.image_size:
            raise ValueError(f"preprocessing sizes must satisfy crop_to <= resize_to <= image_size, got "
                             f"{self.crop_to}, {self.resize_to}, {self.image_size}")

    def as_attrs(self) -> dict:
        return {k: int(v) for k, v in self.__dict__.items()}


def dr2_style_rgb(cube: np.ndarray, bands: str = "grz", scales=None, limits=DR2_LIMITS,
                  desaturate: bool = True) -> np.ndarray:
    """GZ DECaLS colour: scale each band into its RGB plane, arcsinh stretch, map the
    stretched ``limits`` to [0, 1], pull single-colour pixels towards grey (so sky noise is
    not speckled with colour), clip. Input (3, H, W) nanomaggies; output (H, W, 3) float
    in [0, 1]."""
    scales = scales or DR2_SCALES
    h, w = cube.shape[1:]
    rgb = np.zeros((h, w, 3), np.float64)
    for plane_data, band in zip(cube, bands, strict=True):
        plane, scale = scales[band]
        rgb[:, :, plane] = plane_data / scale
    lo, hi = np.arcsinh(limits[0]), np.arcsinh(limits[1])
    rgb = (np.arcsinh(rgb) - lo) / (hi - lo)
    if desaturate:
        mean = rgb.mean(axis=2, keepdims=True)
        safe_mean = np.where(mean == 0, 1.0, mean)
        dominance = np.clip((rgb / safe_mean).max(axis=2, keepdims=True) / 2.5, None, 1.0)
        # weight 1 keeps the colour; pixels dominated by one channel are pulled to grey
        weight = np.sin((1.0 - dominance) * np.pi / 2.0)
        rgb = weight * rgb + (1.0 - weight) * mean
    return np.clip(rgb, 0.0, 1.0)


def fits_to_colour_image(cube: np.ndarray, bands: str = "grz", image_size: int = 424) -> np.ndarray:
    """The 424 x 424 uint8 RGB image GZ DECaLS showed: dr2 colour, Lanczos resize, and a
    top-bottom flip (FITS rows run bottom-up)."""
    rgb = dr2_style_rgb(cube, bands)
    img = Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB")
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(img)[::-1].copy()


def greyscale(rgb_uint8: np.ndarray) -> np.ndarray:
    """Mean of the three channels, float32 in [0, 255], shape (H, W)."""
    return rgb_uint8.astype(np.float32).mean(axis=2)


def resize_grey(grey: np.ndarray, resize_to: int = 300) -> np.ndarray:
    """Resize (bilinear, antialiased) a greyscale image to ``resize_to`` square; returns
    uint8 (resize_to, resize_to)."""
    img = Image.fromarray(grey.astype(np.float32), mode="F")
    arr = np.asarray(img.resize((resize_to, resize_to), Image.Resampling.BILINEAR))
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def thumbnail(rgb_uint8: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb_uint8).resize((size, size), Image.Resampling.LANCZOS))


def colour_to_model_input(rgb_uint8: np.ndarray, params: PreprocessingParams) -> tuple[np.ndarray, np.ndarray]:
    """(greyscale uint8 (resize_to, resize_to), colour thumbnail uint8 (t, t, 3)) from a
    colour image of any size; it is first brought to ``params.image_size`` as the GZ images
    are."""
    if rgb_uint8.shape[0] != params.image_size or rgb_uint8.shape[1] != params.image_size:
        rgb_uint8 = np.asarray(
            Image.fromarray(rgb_uint8).resize((params.image_size, params.image_size), Image.Resampling.LANCZOS)
        )
    grey = resize_grey(greyscale(rgb_uint8), params.resize_to)
    return grey, thumbnail(rgb_uint8, params.thumbnail_size)


def load_jpeg_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_to_crop(path: str, fmt: str, params: PreprocessingParams, bands: str = "grz",
                  max_blank_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """One stored image (FITS cutout or colour JPEG) to (crop, thumbnail); raises
    :class:`~morphtools.cutouts.CutoutError` naming the file when it is unusable."""
    from .cutouts import CutoutError, read_fits_cutout

    if fmt == "fits":
        cube = read_fits_cutout(path, len(bands), max_blank_fraction)
        rgb = fits_to_colour_image(cube, bands, params.image_size)
    elif fmt in ("jpeg", "png"):  # colour images as volunteers saw them (GZ2 JPEGs, GZ DECaLS PNGs)
        try:
            rgb = load_jpeg_rgb(path)
        except FileNotFoundError as err:
            raise CutoutError(f"{path}: missing") from err
        except Exception as err:
            raise CutoutError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
        if rgb.mean() < 1.0:
            raise CutoutError(f"{path}: blank image")
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return colour_to_model_input(rgb, params)


def preprocess_shard(manifest, params: PreprocessingParams, fmt: str, bands: str = "grz",
                     max_blank_fraction: float = 0.2, progress=None, log=None):
    """Crops for every usable image in a shard manifest.

    Returns (galaxy_ids, images (n, r, r) uint8 at ``resize_to``, thumbnails (n, t, t, 3) uint8, qa) where
    ``qa`` has one row per galaxy of the manifest: ``galaxy_id, status, stage, reason``.
    """
    import pandas as pd

    from .cutouts import FETCH_FAILURE_STATUSES, CutoutError

    ids, crops, thumbs, qa = [], [], [], []
    iterator = manifest.itertuples(index=False)
    if progress is not None:
        iterator = progress(iterator, total=len(manifest))
    for row in iterator:
        gid = str(row.galaxy_id)
        if row.status in FETCH_FAILURE_STATUSES:  # no coverage, bad data, or the service never delivered
            qa.append((gid, row.status, "fetch", row.reason))
            continue
        try:
            crop, thumb = image_to_crop(row.path, fmt, params, bands, max_blank_fraction)
        except CutoutError as err:
            if log:
                log.warning("galaxy %s skipped: %s", gid, err)
            qa.append((gid, "rejected", "preprocess", str(err)))
            continue
        ids.append(gid)
        crops.append(crop)
        thumbs.append(thumb)
        qa.append((gid, "ok", "", ""))
    c, t = params.resize_to, params.thumbnail_size
    crops_arr = np.stack(crops) if crops else np.zeros((0, c, c), np.uint8)
    thumbs_arr = np.stack(thumbs) if thumbs else np.zeros((0, t, t, 3), np.uint8)
    qa_df = pd.DataFrame.from_records(qa, columns=["galaxy_id", "status", "stage", "reason"])
    return np.array(ids, dtype=object), crops_arr, thumbs_arr, qa_df
