"""Astronomaly's preprocessing and ellipse features on drawn images."""

import cv2
import numpy as np
import pytest

from morphtools.anomaly.ellipse import EllipseParams, contour_mask, ellipse_features, image_features


def gaussian(size, x0, y0, sx, sy, angle_deg, amp=200.0):
    y, x = np.mgrid[:size, :size].astype(float)
    t = np.radians(angle_deg)
    u = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
    v = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
    return amp * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def sky(size=128, seed=0):
    return np.random.default_rng(seed).normal(10, 2, (size, size))


def test_feature_names_are_24_in_the_lb21_order():
    names = EllipseParams().feature_names()
    assert len(names) == 24 and names[:2] == ["residual_90", "residual_80"] and names[-1] == "theta_0"


def test_contour_mask_keeps_the_central_source_only_and_scales_to_unit_range():
    image = sky() + gaussian(128, 64, 64, 10, 6, 30) + gaussian(128, 15, 15, 4, 4, 0)
    masked = contour_mask(image)
    assert masked.max() == pytest.approx(1.0) and masked.min() == 0.0
    assert masked[64, 64] > 0.9
    assert masked[10:20, 10:20].max() == 0.0  # the off-centre source is cut away
    assert (masked > 0).mean() < 0.2  # and so is the sky


def test_a_smooth_ellipse_gives_consistent_ellipses():
    image = sky() + gaussian(128, 64, 64, 14, 6, 30)
    f = dict(zip(EllipseParams().feature_names(), image_features(image), strict=True))
    assert np.isfinite(list(f.values())).all()
    # the first percentile is the reference: zero offset, unit aspect ratio, zero angle
    assert f["offset_90"] == 0 and f["aspect_90"] == 1 and f["theta_90"] == 0
    for p in (80, 70, 60, 50):  # nested similar ellipses: same centre, shape and angle
        assert f[f"offset_{p:g}"] < 2 and abs(f[f"aspect_{p:g}"] - 1) < 0.15 and f[f"theta_{p:g}"] < 6
        assert f[f"residual_{p:g}"] < 0.01


def test_a_pair_of_galaxies_shows_offset_ellipses():
    single = image_features(sky() + gaussian(128, 64, 64, 8, 8, 0))
    pair = image_features(sky() + gaussian(128, 64, 64, 8, 8, 0) + gaussian(128, 86, 64, 7, 7, 0, amp=150))
    names = EllipseParams().feature_names()
    i50 = names.index("offset_0")
    assert np.isfinite(pair).all() and pair[i50] > single[i50] + 3
    assert pair[names.index("aspect_0")] > single[names.index("aspect_0")] + 0.1  # the outer contour wraps both


def test_a_lone_noise_pixel_nearer_the_centre_does_not_replace_the_source():
    image = (gaussian(128, 74, 64, 4, 4, 0, amp=1.0)).astype(np.float32)
    image[image < 0.01] = 0  # as contour_mask leaves it: the source, zero around it
    image[64, 64] = 1.0  # isolated above every threshold, and exactly at the centre
    features = dict(zip(EllipseParams().feature_names(), ellipse_features(image), strict=True))
    assert np.isfinite(list(features.values())).all()
    assert features["offset_50"] < 1  # every ellipse is the blob's, not a jump to the speck


def test_blank_or_featureless_images_fail_with_nan():
    assert np.isnan(image_features(np.zeros((64, 64)))).all()
    assert np.isnan(ellipse_features(np.zeros((64, 64), np.float32))).all()
    tiny = np.zeros((64, 64), np.float32)
    tiny[32, 32] = 1.0  # a single pixel: no contour of five points
    assert np.isnan(ellipse_features(tiny)).all()


def test_colour_images_use_the_configured_channel():
    red = sky() + gaussian(128, 64, 64, 14, 6, 30)
    rgb = np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1)
    np.testing.assert_allclose(image_features(rgb, EllipseParams(channel=0)), image_features(red))
    assert np.isnan(image_features(rgb, EllipseParams(channel=1))).all()


def test_opencv_fit_ellipse_convention():
    # guards the (centre, (axis, axis), angle) convention the residual drawing relies on
    canvas = np.zeros((100, 100), np.uint8)
    cv2.ellipse(canvas, (50, 50), (30, 10), 0, 0, 360, 1, -1)
    contours, _ = cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (x, y), axes, _ = cv2.fitEllipse(contours[0])
    assert (x, y) == pytest.approx((50, 50), abs=0.6)
    assert sorted(axes) == pytest.approx([20, 60], abs=2)
