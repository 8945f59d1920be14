"""The Astronomaly baseline's features (Lochner & Bassett 2021, "LB21"), reimplemented from
the published description (the package is not on a package index):

1. Preprocess one image channel (the red channel of the colour image): threshold at the
   3-sigma-clipped median + 1 standard deviation, keep the external contour that contains
   the image centre (else the last one found), zero everything outside it, and min-max
   scale to [0, 1].
2. Fit ellipses: for each flux percentile (90, 80, 70, 60, 50, 0) of the non-zero pixels,
   threshold, take the external contour nearest the centre (for the first percentile) or
   nearest the first contour's centroid (later ones), and fit an ellipse with OpenCV's
   ``fitEllipse``. Per percentile: the residual (mean squared difference between the filled
   contour and the filled ellipse), the offset of the ellipse centre from the first
   ellipse's, the aspect ratio (>= 1) over the first one's, and the angle difference from
   the first one's. 6 x 4 = 24 features; any failure makes them all NaN (the galaxy is then
   dropped from the experiment, as in LB21 and the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from astropy.stats import sigma_clipped_stats

FEATURE_KINDS = ("residual", "offset", "aspect", "theta")


@dataclass(frozen=True)
class EllipseParams:
    percentiles: tuple[float, ...] = (90, 80, 70, 60, 50, 0)
    sigma_clip: float = 3.0
    channel: int = 0  # red, of an RGB image

    def feature_names(self) -> list[str]:
        return [f"{kind}_{p:g}" for kind in FEATURE_KINDS for p in self.percentiles]


class EllipseFitError(Exception):
    """No usable contour or ellipse at some percentile."""


def _contours(binary: np.ndarray):
    contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return contours


def contour_mask(image: np.ndarray, sigma_clip: float = 3.0) -> np.ndarray:
    """LB21's preprocessing of one channel (float or uint8 (H, W)): the central source cut
    out by a contour at the sigma-clipped median + 1 std, everything else zero, scaled to
    [0, 1] (float32). An image with no pixel above the threshold comes back all zero."""
    image = np.asarray(image, np.float32)
    _, median, std = sigma_clipped_stats(image, sigma=sigma_clip)
    contours = _contours(image > median + std)
    if not contours:
        return np.zeros_like(image)
    h, w = image.shape
    centre = (float(w // 2), float(h // 2))
    chosen = next((c for c in contours if cv2.pointPolygonTest(c, centre, False) > 0), contours[-1])
    mask = np.zeros(image.shape, np.uint8)
    cv2.drawContours(mask, [chosen], 0, 1, thickness=-1)
    out = image * mask
    lo, hi = out.min(), out.max()
    if hi <= lo:
        return np.zeros_like(image)
    return ((out - lo) / (hi - lo)).astype(np.float32)


def _centroid(contour) -> tuple[float, float] | None:
    """The contour's centroid; None for one that encloses no area (a lone pixel or a
    one-pixel line), which has none."""
    m = cv2.moments(contour)
    if m["m00"] == 0:
        return None
    return m["m10"] / m["m00"], m["m01"] / m["m00"]


def _fit_one(image: np.ndarray, threshold: float, anchor: tuple[float, float]):
    """(residual, x, y, aspect, theta, centroid) of the ellipse fitted to the contour
    nearest ``anchor`` at ``threshold``."""
    # a contour without area has no centroid and is never the nearest: Astronomaly leaves
    # such contours at (0, 0), so in noisy images single-pixel specks near the centre do not
    # take the place of the source
    found = [(c, xy) for c in _contours(image > threshold) if (xy := _centroid(c)) is not None]
    if not found:
        raise EllipseFitError(f"no contour with area above {threshold:.3g}")
    contours = [c for c, _ in found]
    centroids = np.array([xy for _, xy in found])
    nearest = int(np.argmin(np.hypot(centroids[:, 0] - anchor[0], centroids[:, 1] - anchor[1])))
    contour = contours[nearest]
    if len(contour) < 5:
        raise EllipseFitError(f"contour of {len(contour)} points: fitEllipse needs 5")
    (x, y), (ax1, ax2), theta = cv2.fitEllipse(contour)
    if not np.all(np.isfinite([x, y, ax1, ax2, theta])) or min(ax1, ax2) <= 0 or x < 0 or y < 0:
        raise EllipseFitError(f"degenerate ellipse {(x, y, ax1, ax2, theta)}")
    h, w = image.shape
    if x > w or y > h:
        raise EllipseFitError(f"ellipse centre ({x:.1f}, {y:.1f}) outside the image")
    filled_contour = np.zeros(image.shape, np.uint8)
    cv2.drawContours(filled_contour, [contour], 0, 1, thickness=-1)
    filled_ellipse = np.zeros(image.shape, np.uint8)
    cv2.ellipse(filled_ellipse, (int(round(x)), int(round(y))), (int(round(ax1)) // 2, int(round(ax2)) // 2),
                float(round(theta)), 0, 360, 1, thickness=-1)
    residual = float(np.mean((filled_ellipse.astype(np.float32) - filled_contour) ** 2))
    aspect = max(ax1, ax2) / min(ax1, ax2)
    return residual, x, y, aspect, theta, centroids[nearest]


def ellipse_features(image: np.ndarray, params: EllipseParams = EllipseParams()) -> np.ndarray:
    """The 24 features of one preprocessed image (see :func:`contour_mask`), ordered as
    ``params.feature_names()``; all NaN when any percentile fails."""
    n = len(params.percentiles)
    nan = np.full(4 * n, np.nan)
    image = np.asarray(image, np.float32)
    nonzero = image[image > 0]
    if nonzero.size < 5:
        return nan
    h, w = image.shape
    anchor = (float(w // 2), float(h // 2))
    fits = []
    try:
        for i, p in enumerate(params.percentiles):
            residual, x, y, aspect, theta, centroid = _fit_one(image, float(np.percentile(nonzero, p)), anchor)
            if i == 0:
                anchor = (float(centroid[0]), float(centroid[1]))
            fits.append((residual, x, y, aspect, theta))
    except EllipseFitError:
        return nan
    fits = np.array(fits)
    x0, y0, aspect0, theta0 = fits[0, 1], fits[0, 2], fits[0, 3], fits[0, 4]
    residual = fits[:, 0]
    offset = np.hypot(fits[:, 1] - x0, fits[:, 2] - y0)
    aspect = fits[:, 3] / aspect0
    theta = np.abs(fits[:, 4] - theta0) % 360
    theta = np.where(theta > 90, theta - 90, theta)  # the ellipse's axis has no direction
    return np.concatenate([residual, offset, aspect, theta])


def image_features(rgb_or_grey: np.ndarray, params: EllipseParams = EllipseParams()) -> np.ndarray:
    """Preprocess one colour (H, W, 3) or single-channel (H, W) image and fit the ellipses."""
    image = np.asarray(rgb_or_grey)
    if image.ndim == 3:
        image = image[:, :, params.channel]
    return ellipse_features(contour_mask(image, params.sigma_clip), params)
