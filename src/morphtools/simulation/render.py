"""Render simulated galaxies as survey images in nanomaggies per pixel.

Each galaxy is a sum of analytic components (Sersic bulge, exponential disc, logarithmic
spiral arms, bar, ring, star-forming clumps, tidal tails, companions, neighbours), each
with its own colour, drawn on the requested pixel grid, convolved with a per-image Moffat
PSF and given sky and source noise set by the survey's 5-sigma depths. GalSim has no
spiral, bar or ring profiles, and drawing through its InterpolatedImage would add a
resampling step without gaining accuracy at these pixel scales, so the profiles are drawn
with numpy; PSF convolution is an FFT.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.signal import fftconvolve

from .population import disc_scale_length, nucleus_separation
from .version import RENDER_VERSION


@dataclass(frozen=True)
class SurveyModel:
    """Observing conditions of a survey. Seeing FWHM in arcsec; depths are median 5-sigma
    point-source AB magnitudes; ``seeing_scatter`` is fractional, per image."""

    name: str
    bands: tuple[str, ...]
    native_pixscale: float
    seeing_fwhm: dict[str, float]
    depth_5sigma: dict[str, float]
    seeing_scatter: float = 0.12
    depth_scatter_mag: float = 0.2
    moffat_beta: float = 3.5
    # nanomaggies per detected photon-equivalent, sets the source (Poisson) noise
    nmgy_per_count: float = 0.004
    # field stars and faint background galaxies per square arcmin
    star_density: float = 0.4
    background_galaxy_density: float = 2.5
    seed_salt: int = 0


DECALS = SurveyModel(
    name="decals",
    bands=("g", "r", "z"),
    native_pixscale=0.262,
    seeing_fwhm={"g": 1.45, "r": 1.3, "z": 1.2},
    depth_5sigma={"g": 24.0, "r": 23.4, "z": 22.5},
    seed_salt=0,
)

# SDSS as seen in GZ2: coarser pixels, worse seeing, ~1.2 mag shallower
SDSS = SurveyModel(
    name="sdss",
    bands=("g", "r", "i"),
    native_pixscale=0.396,
    seeing_fwhm={"g": 1.55, "r": 1.45, "i": 1.35},
    depth_5sigma={"g": 22.7, "r": 22.2, "i": 21.6},
    nmgy_per_count=0.008,
    seed_salt=7919,
)


def render_digest(row, survey: SurveyModel, **settings) -> str:
    """Hex SHA-256 naming everything an image of ``row`` depends on: ``RENDER_VERSION``,
    the survey model, every column of the galaxy's truth row (a pandas Series or mapping)
    and the image's ``settings`` (e.g. its field or JPEG quality). Images carry it (FITS
    header ``SIMRENDR``, JPEG comment) so that a cached image made from other parameters,
    or by older rendering code, is rendered again rather than kept because it exists."""

    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    payload = {
        "render_version": RENDER_VERSION,
        "survey": asdict(survey),
        "row": {str(k): plain(v) for k, v in dict(row).items()},
        "settings": {k: plain(v) for k, v in settings.items()},
    }
    # repr keeps every bit of a float; sort_keys makes the digest independent of column order
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


# Colours of each kind of stellar population as (g-r, r-i, r-z) in AB mag
COLOURS = {
    "old": (0.78, 0.40, 0.72),
    "disc": (0.55, 0.30, 0.50),
    "young": (0.30, 0.12, 0.22),
    "tidal": (0.62, 0.33, 0.55),
    "star": (0.9, 0.35, 0.6),
    "dust_free_blue": (0.2, 0.05, 0.1),
}


def band_ratio(colour: tuple[float, float, float], band: str) -> float:
    """Flux in ``band`` relative to r for a component of the given colour."""
    g_r, r_i, r_z = colour
    return {"g": 10 ** (-0.4 * g_r), "r": 1.0, "i": 10 ** (0.4 * r_i), "z": 10 ** (0.4 * r_z)}[band]


def sersic_b(n: float) -> float:
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)


@dataclass
class Canvas:
    """Pixel grid in arcsec centred on the cutout centre; x to the right, y up."""

    size: int
    pixscale: float
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)

    def __post_init__(self):
        c = (np.arange(self.size) - (self.size - 1) / 2.0) * self.pixscale
        self.x, self.y = np.meshgrid(c, c[::-1])


@dataclass
class Component:
    image: np.ndarray  # unnormalised surface brightness, >= 0
    flux_r: float  # total r-band flux in nanomaggies
    colour: tuple[float, float, float]
    dusty: bool = False  # attenuated by a dust lane


def _rotate(x, y, angle_deg, x0=0.0, y0=0.0):
    a = np.radians(angle_deg)
    dx, dy = x - x0, y - y0
    return dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)


def sersic_image(canvas, x0, y0, r_eff, n, q, pa, boxiness=2.0):
    """Sersic profile with generalised-ellipse isophotes (boxiness > 2 gives boxy)."""
    u, v = _rotate(canvas.x, canvas.y, pa, x0, y0)
    soft = 0.5 * canvas.pixscale  # keeps the cusp finite at pixel scale
    r = (np.abs(u) ** boxiness + np.abs(v / max(q, 0.05)) ** boxiness) ** (1.0 / boxiness)
    r = np.sqrt(r**2 + soft**2)
    return np.exp(-sersic_b(n) * ((r / r_eff) ** (1.0 / n) - 1.0))


@dataclass
class DiscFrame:
    """Coordinates in the plane of an inclined disc: radius R and azimuth phi."""

    R: np.ndarray
    phi: np.ndarray
    u: np.ndarray
    v: np.ndarray


def disc_frame(canvas, x0, y0, pa, cos_incl, thickness) -> DiscFrame:
    u, v = _rotate(canvas.x, canvas.y, pa, x0, y0)
    q = np.sqrt(cos_incl**2 + thickness**2 * (1 - cos_incl**2))
    v = v / q
    return DiscFrame(np.hypot(u, v) + 1e-6, np.arctan2(v, u), u, v)


def _blob_trail(canvas, xs, ys, sigmas, weights):
    """Sum of round Gaussians along a path (tails, plumes, trails of clumps)."""
    img = np.zeros_like(canvas.x)
    centre = (canvas.size - 1) / 2.0
    for xc, yc, s, w in zip(xs, ys, sigmas, weights, strict=True):
        # evaluate each blob only within its 4-sigma window: most are a few pixels across
        col, row, reach = centre + xc / canvas.pixscale, centre - yc / canvas.pixscale, 4 * s / canvas.pixscale
        c0, c1 = max(0, int(col - reach)), min(canvas.size, int(col + reach) + 2)
        r0, r1 = max(0, int(row - reach)), min(canvas.size, int(row + reach) + 2)
        if c0 >= c1 or r0 >= r1:
            continue
        dx = canvas.x[r0:r1, c0:c1] - xc
        dy = canvas.y[r0:r1, c0:c1] - yc
        img[r0:r1, c0:c1] += w / (s * s) * np.exp(-(dx**2 + dy**2) / (2 * s * s))
    return img


def _tidal_tail(canvas, rng, x0, y0, r_start, r_end, angle0, sweep_deg, width, n=40):
    t = np.linspace(0, 1, n)
    ang = np.radians(angle0 + sweep_deg * t)
    rad = r_start + (r_end - r_start) * t
    xs = x0 + rad * np.cos(ang) + rng.normal(0, 0.05 * r_end, n)
    ys = y0 + rad * np.sin(ang) + rng.normal(0, 0.05 * r_end, n)
    sig = width * (0.6 + 0.8 * t)
    w = (1 - 0.7 * t) * rng.uniform(0.6, 1.4, n)
    return _blob_trail(canvas, xs, ys, sig, w)


def galaxy_components(row, canvas: Canvas, rng: np.random.Generator, x0=0.0, y0=0.0) -> list[Component]:
    """Components of one catalogue galaxy centred at (x0, y0) arcsec on ``canvas``."""
    total = 10 ** ((22.5 - row["mag_r"]) / 2.5)
    re = float(row["half_light_radius"])
    pa = float(row["position_angle"])
    morph = row["morph_class"]
    comps: list[Component] = []
    bt = float(row["bulge_to_total"])

    if morph == "merger":
        return _merger_components(row, canvas, rng, total, re, pa, x0, y0)

    # lopsided / disturbed galaxies have an outer disc displaced from the nucleus
    tidal = float(row["tidal_strength"])
    shift = 0.0 if row["disturbance"] == "none" else 0.35 * tidal * re
    shift_angle = np.radians(row["companion_angle"])
    dx_out, dy_out = shift * np.cos(shift_angle), shift * np.sin(shift_angle)

    if bt > 0:
        if morph == "elliptical":
            q_b, r_b = float(row["axis_ratio"]), re
        else:
            q_b = max(0.55, float(row["cos_inclination"])) if morph != "edge_on" else 0.6
            r_b = re * (0.22 + 0.3 * bt)
        box = 3.2 if row.get("bulge_shape", "") == "boxy" else 2.0
        comps.append(
            Component(sersic_image(canvas, x0, y0, r_b, float(row["sersic_n"]), q_b, pa, box), total * bt, COLOURS["old"], True)
        )

    disc_flux = total * (1 - bt)
    if disc_flux > 0:
        h = disc_scale_length(re, bt)
        frame = disc_frame(canvas, x0 + dx_out, y0 + dy_out, pa, float(row["cos_inclination"]), float(row["disc_thickness"]))
        disc = np.exp(-frame.R / h)
        if morph == "irregular":
            # irregulars: no ordered disc, a lumpy asymmetric body
            wobble = 1 + 0.5 * np.cos(frame.phi - rng.uniform(0, 2 * np.pi)) * (1 - np.exp(-frame.R / h))
            disc = disc * wobble
        arm_share = float(row["arm_strength"]) * 0.7
        clump_share = float(row["clumpiness"])
        bar_share = float(row["bar_strength"]) / max(1 - bt, 0.2)
        smooth_share = max(0.05, 1 - arm_share - clump_share - bar_share)
        norm = smooth_share + arm_share + clump_share + bar_share
        comps.append(Component(disc, disc_flux * smooth_share / norm, COLOURS["disc"], True))

        if arm_share > 0 and row["arm_count"] > 0:
            m = int(row["arm_count"])
            pitch = np.radians(float(row["pitch_deg"]))
            arg = m * (frame.phi - np.log(frame.R / h) / np.tan(pitch)) + rng.uniform(0, 2 * np.pi)
            if m >= 5:  # flocculent many-armed: break arms into segments
                arg = arg + 1.5 * np.sin(3 * frame.phi + np.log(frame.R / h) * 2)
            s = 0.5 * (1 + np.cos(arg))
            taper = 1 - np.exp(-((frame.R / (0.7 * h)) ** 2))
            arms = disc * s**3 * taper
            comps.append(Component(arms, disc_flux * arm_share / norm, COLOURS["young"], True))
        if bar_share > 0:
            bar_pa = rng.uniform(0, 180)
            ub, vb = _rotate(frame.u, frame.v, bar_pa)
            a = float(row["bar_length"]) * h
            bar = np.exp(-((np.abs(ub) / a) ** 3.5) - (vb / (0.27 * a)) ** 2)
            comps.append(Component(bar, disc_flux * bar_share / norm, COLOURS["old"], True))
        ring = _ring(frame, h, row, rng, comps)
        if ring is not None:
            comps.append(ring)
        if clump_share > 0:
            comps.append(Component(_clumps(canvas, rng, frame, h, x0, y0, pa, row), disc_flux * clump_share / norm, COLOURS["young"]))

    if row["disturbance"] in ("minor", "major"):
        comps.extend(_disturbance(row, canvas, rng, total, re, x0, y0))
    if row.get("neighbour", ""):
        comps.extend(_neighbour(row, canvas, rng, total, re, x0, y0))
    return comps


RING_CONTRAST = 4.0  # how far a ring's crest rises above the galaxy's light there, per unit ring_strength
# the narrowest ring (Gaussian sigma, arcsec): about the seeing's sigma, or the PSF would flatten its crest
RING_MIN_WIDTH = 0.6


def _ring(frame, h, row, rng, comps):
    """The ring component of a disc galaxy, or None without one.

    Its brightness is set against the galaxy's other light where it lies (``comps``: the
    bulge, disc, arms and bar drawn so far): averaged around the ring, its crest adds
    ``RING_CONTRAST * ring_strength`` times that light, so a ring that volunteers call one
    (strength above ~0.5) is a bright annulus, a local maximum of the radial profile, as
    in real ringed galaxies. The other components are dimmed by the ring's flux so that the
    galaxy's total flux is unchanged (the contrast holds against the dimmed light). (A
    fixed share of the disc's flux, as before RENDER_VERSION 2, spread so thin over a wide
    annulus that no ring could be seen even at 424 px, while the simulated volunteers voted
    for it.) ``ring_radius`` is in disc scale lengths ``h`` (arcsec), ``ring_width`` a
    fraction of the radius.
    """
    strength = float(row["ring_strength"])
    if strength <= 0:
        return None
    rr = float(row["ring_radius"]) * h
    w = max(float(row["ring_width"]) * rr, RING_MIN_WIDTH)
    ring = np.exp(-((frame.R - rr) ** 2) / (2 * w * w))
    ring *= 1 + 0.35 * np.cos(frame.phi - rng.uniform(0, 2 * np.pi))
    # rings are knotty with star formation
    ring *= 1 + 0.5 * np.cos(rng.integers(5, 12) * frame.phi + rng.uniform(0, 6.3)) ** 2
    crest = (frame.R > rr - 0.5 * w) & (frame.R < rr + 0.5 * w)
    shown = [c for c in comps if c.flux_r > 0 and c.image.sum() > 0]
    if not crest.any() or not shown:
        return None
    total = sum(c.flux_r for c in shown)
    # surface brightness (nanomaggies per pixel) on the crest: the other light, and a unit-flux ring
    light = sum(c.flux_r * c.image[crest].mean() / c.image.sum() for c in shown)
    unit_ring = ring[crest].mean() / ring.sum()
    lift = RING_CONTRAST * strength * light
    # flux * unit_ring = lift * (total - flux) / total
    flux = lift / (unit_ring + lift / total)
    for c in shown:
        c.flux_r *= (total - flux) / total
    return Component(ring, flux, COLOURS["young"], True)


def _clumps(canvas, rng, frame, h, x0, y0, pa, row):
    n = int(6 + 30 * float(row["clumpiness"]))
    radius = h * np.abs(rng.normal(0, 1.5, n))
    ang = rng.uniform(0, 2 * np.pi, n)
    # clump positions in the disc plane, projected back onto the sky
    u = radius * np.cos(ang)
    v = radius * np.sin(ang) * max(float(row["cos_inclination"]), 0.2)
    a = np.radians(pa)
    xs = x0 + u * np.cos(a) - v * np.sin(a)
    ys = y0 + u * np.sin(a) + v * np.cos(a)
    sig = h * rng.uniform(0.08, 0.25, n)
    w = rng.lognormal(0, 0.8, n) * sig**2
    return _blob_trail(canvas, xs, ys, sig, w)


def _merger_components(row, canvas, rng, total, re, pa, x0, y0):
    stage = float(row["merger_stage"])
    ratio = float(row["companion_flux_ratio"])
    sep = nucleus_separation(float(row["companion_separation"]), re, stage)
    ang = np.radians(row["companion_angle"])
    f1, f2 = total / (1 + ratio), total * ratio / (1 + ratio)
    tidal_flux = total * float(row["tidal_strength"]) * 0.18
    f1, f2 = f1 - tidal_flux * f1 / total, f2 - tidal_flux * f2 / total
    comps = []
    cx, cy = x0 + sep * np.cos(ang) / 2, y0 + sep * np.sin(ang) / 2
    for (xc, yc, flux, size, q, n) in (
        (x0 - sep * np.cos(ang) / 2, y0 - sep * np.sin(ang) / 2, f1, re * 0.7, rng.uniform(0.4, 1.0), rng.uniform(1, 4)),
        (cx, cy, f2, re * 0.7 * np.sqrt(ratio), rng.uniform(0.4, 1.0), rng.uniform(1, 4)),
    ):
        comps.append(Component(sersic_image(canvas, xc, yc, size, n, q, rng.uniform(0, 180)), flux * 0.6, COLOURS["old"]))
        disc = np.exp(-disc_frame(canvas, xc, yc, rng.uniform(0, 180), rng.uniform(0.3, 1), 0.15).R / (size * 0.9))
        comps.append(Component(disc, flux * 0.4, COLOURS["disc"]))
    n_tails = 2 if rng.random() < 0.7 else 1
    tails = np.zeros_like(canvas.x)
    for k in range(n_tails):
        start = np.degrees(ang) + 180 * k + rng.uniform(-30, 30)
        tails += _tidal_tail(canvas, rng, x0, y0, 0.6 * re, re * rng.uniform(2.5, 4.5), start, rng.choice([-1, 1]) * rng.uniform(60, 150), 0.35 * re)
    comps.append(Component(tails, tidal_flux, COLOURS["tidal"]))
    if rng.random() < 0.5:  # shocked gas: a few bright young knots near the overlap
        knots = _blob_trail(canvas, cx + rng.normal(0, 0.5 * re, 6), cy + rng.normal(0, 0.5 * re, 6), rng.uniform(0.3, 0.8, 6), rng.uniform(0.5, 1.5, 6))
        comps.append(Component(knots, total * 0.04, COLOURS["young"]))
    return comps


def _disturbance(row, canvas, rng, total, re, x0, y0):
    strength = float(row["tidal_strength"])
    major = row["disturbance"] == "major"
    comps = []
    n = 2 if major else 1
    plumes = np.zeros_like(canvas.x)
    for _ in range(n):
        plumes += _tidal_tail(
            canvas, rng, x0, y0, 0.8 * re, re * rng.uniform(2.0, 3.5 if major else 2.5),
            rng.uniform(0, 360), rng.choice([-1, 1]) * rng.uniform(30, 100), 0.4 * re,
        )
    comps.append(Component(plumes, total * strength * (0.12 if major else 0.05), COLOURS["tidal"]))
    if not major and rng.random() < 0.5:  # a shell: a faint partial arc at a few Re
        frame = disc_frame(canvas, x0, y0, 0.0, 1.0, 0.1)
        r_shell = re * rng.uniform(1.8, 3.0)
        shell = np.exp(-((frame.R - r_shell) ** 2) / (2 * (0.15 * r_shell) ** 2)) * (np.cos(frame.phi - rng.uniform(0, 6.3)) > 0.3)
        comps.append(Component(shell, total * strength * 0.04, COLOURS["tidal"]))
    return comps


def _neighbour(row, canvas, rng, total, re, x0, y0):
    ang = np.radians(row["neighbour_angle"])
    sep = float(row["neighbour_separation"]) * re
    xn, yn = x0 + sep * np.cos(ang), y0 + sep * np.sin(ang)
    flux = total * float(row["neighbour_flux_ratio"])
    if row["neighbour"] == "star":
        return [Component(_point(canvas, xn, yn), flux, COLOURS["star"])]
    size = re * rng.uniform(0.2, 0.6)
    colour = COLOURS["old"] if rng.random() < 0.5 else COLOURS["disc"]
    img = sersic_image(canvas, xn, yn, size, rng.uniform(1, 4), rng.uniform(0.3, 1.0), rng.uniform(0, 180))
    return [Component(img, flux, colour)]


def _point(canvas, xs, ys):
    """A point source spread bilinearly over the four nearest pixel centres."""
    img = np.zeros_like(canvas.x)
    col = xs / canvas.pixscale + (canvas.size - 1) / 2.0
    row = (canvas.size - 1) / 2.0 - ys / canvas.pixscale
    c0, r0 = int(np.floor(col)), int(np.floor(row))
    fc, fr = col - c0, row - r0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        if 0 <= r < canvas.size and 0 <= c < canvas.size:
            img[r, c] += w
    return img


def moffat_kernel(fwhm_arcsec: float, pixscale: float, beta: float) -> np.ndarray:
    alpha = fwhm_arcsec / (2 * np.sqrt(2 ** (1 / beta) - 1))
    half = int(np.ceil(3.0 * fwhm_arcsec / pixscale)) + 2
    c = np.arange(-half, half + 1) * pixscale
    xx, yy = np.meshgrid(c, c)
    k = (1 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    return k / k.sum()


def _field_sources(canvas, rng, survey: SurveyModel):
    """Field stars (point sources) and faint background galaxies in the cutout."""
    area_arcmin2 = (canvas.size * canvas.pixscale / 60.0) ** 2
    half = canvas.size * canvas.pixscale / 2
    stars = []
    for _ in range(rng.poisson(survey.star_density * area_arcmin2)):
        mag = 23.5 - rng.exponential(1.8)
        flux = 10 ** ((22.5 - max(mag, 14.0)) / 2.5)
        xs, ys = rng.uniform(-half, half, 2)
        stars.append(Component(_point(canvas, xs, ys), flux, COLOURS["star"] if rng.random() < 0.6 else COLOURS["young"]))
    for _ in range(rng.poisson(survey.background_galaxy_density * area_arcmin2)):
        mag = rng.uniform(19.5, 23.5)
        xs, ys = rng.uniform(-half, half, 2)
        r_eff = rng.uniform(0.3, 1.2)
        img = np.zeros_like(canvas.x)
        # small and faint: drawn within 10 effective radii, which holds nearly all the light
        window = _window(canvas, xs, ys, 10 * r_eff)
        img[window.slices] = sersic_image(window, xs, ys, r_eff, rng.uniform(1, 4), rng.uniform(0.3, 1), rng.uniform(0, 180))
        stars.append(Component(img, 10 ** ((22.5 - mag) / 2.5), COLOURS["old"] if rng.random() < 0.5 else COLOURS["disc"]))
    return stars


@dataclass
class _Window:
    """A rectangular part of a canvas, usable wherever a canvas is (x, y, pixscale)."""

    x: np.ndarray
    y: np.ndarray
    pixscale: float
    slices: tuple[slice, slice]


def _window(canvas: Canvas, xc: float, yc: float, radius: float) -> _Window:
    centre = (canvas.size - 1) / 2.0
    col, row, reach = centre + xc / canvas.pixscale, centre - yc / canvas.pixscale, radius / canvas.pixscale
    rows = slice(max(0, int(row - reach)), max(1, min(canvas.size, int(row + reach) + 2)))
    cols = slice(max(0, int(col - reach)), max(1, min(canvas.size, int(col + reach) + 2)))
    return _Window(canvas.x[rows, cols], canvas.y[rows, cols], canvas.pixscale, (rows, cols))


def render(
    row,
    survey: SurveyModel,
    size: int,
    pixscale: float,
    offset_arcsec: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Render one catalogue galaxy as a (n_bands, size, size) float32 cube in nanomaggies.

    ``pixscale`` is in arcsec per pixel; fluxes are per pixel, so coarser pixels hold the
    sum of the native pixels they cover. ``offset_arcsec`` places the galaxy off centre.
    Deterministic: the same row, survey and geometry give the same pixels.
    """
    rng = np.random.default_rng([int(row["render_seed"]), survey.seed_salt, size])
    canvas = Canvas(size, pixscale)
    n_bands = len(survey.bands)
    if bool(row.get("no_coverage", False)):
        return np.zeros((n_bands, size, size), np.float32)

    x0, y0 = offset_arcsec
    comps = galaxy_components(row, canvas, rng, x0, y0)
    comps += _field_sources(canvas, rng, survey)
    art = row.get("artifact_kind", "")
    if art == "bright_star":
        mag = rng.uniform(8.5, 12.0)
        xs, ys = rng.normal(0, 0.25 * row["half_light_radius"], 2)
        comps.append(Component(_point(canvas, xs, ys), 10 ** ((22.5 - mag) / 2.5), COLOURS["star"]))

    seeing = float(np.exp(rng.normal(0, survey.seeing_scatter)))
    depth_shift = rng.normal(0, survey.depth_scatter_mag)
    dust = None
    if bool(row.get("dust_lane", False)):
        frame_u, frame_v = _rotate(canvas.x, canvas.y, float(row["position_angle"]), x0, y0)
        width = 0.12 * float(row["half_light_radius"])
        lane = np.exp(-((frame_v - 0.3 * width) ** 2) / (2 * width**2)) * np.exp(-np.abs(frame_u) / (2.5 * row["half_light_radius"]))
        dust = float(row["dust_opacity"]) * lane

    cube = np.empty((n_bands, size, size), np.float32)
    for b, band in enumerate(survey.bands):
        img = np.zeros_like(canvas.x)
        for comp in comps:
            s = comp.image.sum()
            if s <= 0 or comp.flux_r <= 0:
                continue
            layer = comp.image * (comp.flux_r * band_ratio(comp.colour, band) / s)
            if dust is not None and comp.dusty:
                # dust dims blue light most: optical depth scales roughly as 1/wavelength
                tau_scale = {"g": 1.0, "r": 0.75, "i": 0.6, "z": 0.45}[band]
                layer = layer * (1 - np.clip(dust * tau_scale, 0, 0.95))
            img += layer
        fwhm = survey.seeing_fwhm[band] * seeing
        img = fftconvolve(img, moffat_kernel(fwhm, pixscale, survey.moffat_beta), mode="same")
        img = _artifact_overlay(img, art, canvas, rng_for_artifact(row, survey), band)
        sky_sigma = _sky_sigma(survey, band, fwhm, pixscale, depth_shift)
        source_var = np.clip(img, 0, None) * survey.nmgy_per_count
        noise = rng.normal(0.0, 1.0, img.shape) * np.sqrt(sky_sigma**2 + source_var)
        cube[b] = (img + noise).astype(np.float32)
    if art == "bad_data":
        _blank_region(cube, rng_for_artifact(row, survey))
    return cube


def rng_for_artifact(row, survey):
    # artefact geometry must be identical across bands, so it gets its own stream
    return np.random.default_rng([int(row["render_seed"]), survey.seed_salt, 99])


def _artifact_overlay(img, kind, canvas, rng, band):
    if kind == "satellite_trail":
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.3, 0.3) * canvas.size * canvas.pixscale
        dist = canvas.x * np.sin(angle) - canvas.y * np.cos(angle) - offset
        level = rng.uniform(0.3, 2.0) * (canvas.pixscale / 0.262) ** 2
        img = img + level * np.exp(-(dist**2) / (2 * 0.5**2))
    elif kind == "bright_star":
        peak = img.max()
        r, c = np.unravel_index(np.argmax(img), img.shape)
        # diffraction spikes and a saturation bleed column
        length = canvas.size // 3
        spike = np.zeros_like(img)
        spike[r, max(0, c - length): c + length] = 1
        spike[max(0, r - length): r + length, c] = 1
        img = img + 0.02 * peak * spike
        img[:, max(0, c - 1): c + 2] = np.maximum(img[:, max(0, c - 1): c + 2], 0.3 * peak * rng.uniform(0.5, 1.0))
    return img


def _blank_region(cube, rng):
    """Bad data: a stripe with no data and a hot column, as from a CCD edge or readout."""
    size = cube.shape[-1]
    width = int(size * rng.uniform(0.06, 0.15))
    start = rng.integers(0, size - width)
    if rng.random() < 0.5:
        cube[:, :, start:start + width] = 0
    else:
        cube[:, start:start + width, :] = 0
    hot = rng.integers(0, size)
    cube[:, :, hot] += np.abs(cube).max() * 0.2


def _sky_sigma(survey: SurveyModel, band: str, fwhm: float, pixscale: float, depth_shift: float) -> float:
    """Per-pixel sky noise in nanomaggies from the 5-sigma point-source depth."""
    depth = survey.depth_5sigma[band] + depth_shift
    sigma_point = 10 ** ((22.5 - depth) / 2.5) / 5.0
    # noise-equivalent area of a Gaussian PSF, in native pixels
    nea = 4 * np.pi * (fwhm / 2.3548) ** 2 / survey.native_pixscale**2
    sigma_native = sigma_point / np.sqrt(nea)
    # fluxes are per pixel: a coarser pixel sums (pixscale / native)^2 native pixels, so its
    # noise grows linearly with the ratio; a finer one interpolates and shrinks as the area
    ratio = pixscale / survey.native_pixscale
    return float(sigma_native * (ratio if ratio >= 1 else ratio**2))
