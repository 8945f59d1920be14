"""Draw a population of galaxies with known morphology (the simulation's ground truth).

Every size is in arcsec, every flux in nanomaggies (22.5 AB mag = 1 nmgy). One row per
galaxy; the renderer and the simulated volunteers read only this table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MORPH_CLASSES = (
    "elliptical",
    "lenticular",
    "spiral",
    "barred_spiral",
    "edge_on",
    "irregular",
    "merger",
    "artifact",
)
# Shares of the bright (r < 17.77) resolved sample; mergers, irregulars and artefacts are rare
CLASS_SHARES = {
    "elliptical": 0.31,
    "lenticular": 0.13,
    "spiral": 0.22,
    "barred_spiral": 0.14,
    "edge_on": 0.12,
    "irregular": 0.03,
    "merger": 0.03,
    "artifact": 0.02,
}
BULGE_TO_TOTAL = {"none": 0.0, "small": 0.08, "moderate": 0.2, "large": 0.4, "dominant": 0.65}
PITCH_DEG = {"tight": 11.0, "medium": 19.0, "loose": 29.0}
ARM_COUNT_CHOICES = (1, 2, 3, 4, 5, 6)


def iau_name(ra_deg: np.ndarray, dec_deg: np.ndarray) -> list[str]:
    """IAU-style names ``JHHMMSS.ss+DDMMSS.s`` as in the NSA / GZ DECaLS ``iauname``."""
    names = []
    for ra, dec in zip(np.asarray(ra_deg, float), np.asarray(dec_deg, float), strict=True):
        hours = (ra % 360.0) / 15.0
        h = int(hours)
        m = int((hours - h) * 60)
        s = ((hours - h) * 60 - m) * 60
        sign = "+" if dec >= 0 else "-"
        d_abs = abs(dec)
        d = int(d_abs)
        dm = int((d_abs - d) * 60)
        ds = ((d_abs - d) * 60 - dm) * 60
        # truncate rather than round so names never read 60 seconds
        s_str = f"{int(s * 100) / 100:05.2f}"
        ds_str = f"{int(ds * 10) / 10:04.1f}"
        names.append(f"J{h:02d}{m:02d}{s_str}{sign}{d:02d}{dm:02d}{ds_str}")
    return names


def _choice(rng: np.random.Generator, options, probs, size):
    probs = np.asarray(probs, float)
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=probs / probs.sum())]


def nucleus_separation(separation_re, half_light_radius, merger_stage):
    """Projected distance between a merger's two nuclei, in the units of
    ``half_light_radius`` (arcsec in the truth table): ``separation_re`` half-light radii
    for a separate pair, closing as the merger coalesces (``merger_stage`` 0 -> 1).
    Scalars or arrays; the renderer and the volunteers' visibility model share it."""
    return separation_re * half_light_radius * (1.1 - 0.8 * merger_stage)


def disc_scale_length(half_light_radius, bulge_to_total):
    """Exponential scale length of a galaxy's disc, in the units of ``half_light_radius``
    (arcsec in the truth table): a pure disc's half-light radius is 1.678 scale lengths, and
    a bulge makes the galaxy's half-light radius smaller than its disc's. Scalars or arrays;
    the renderer and the volunteers' visibility model share it."""
    return half_light_radius / 1.678 * (1 + 0.6 * bulge_to_total)


def ring_radius_arcsec(truth: pd.DataFrame) -> np.ndarray:
    """Radius of each galaxy's ring in the plane of its disc (arcsec; ``ring_radius`` is in
    disc scale lengths)."""
    return truth["ring_radius"].to_numpy() * disc_scale_length(
        truth["half_light_radius"].to_numpy(), truth["bulge_to_total"].to_numpy())


def sample_population(
    n_galaxies: int,
    seed: int,
    sky_patch: tuple[float, float, float, float] = (150.0, 210.0, 0.0, 30.0),
    mag_range: tuple[float, float] = (13.5, 18.0),
    class_shares: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Draw ``n_galaxies`` galaxies; deterministic for a given ``seed``.

    ``sky_patch`` is (ra_min, ra_max, dec_min, dec_max) in degrees; positions are uniform on
    the sphere within it. ``mag_range`` spans a little beyond the paper's 14 < r < 17.77 cut
    so the catalogue selection has something to remove.
    """
    rng = np.random.default_rng(seed)
    shares = class_shares or CLASS_SHARES
    n = n_galaxies
    ra_min, ra_max, dec_min, dec_max = sky_patch
    ra = rng.uniform(ra_min, ra_max, n)
    sin_dec = rng.uniform(np.sin(np.radians(dec_min)), np.sin(np.radians(dec_max)), n)
    dec = np.degrees(np.arcsin(sin_dec))

    # Euclidean-like counts: N(<m) ~ 10^(0.6 m), sampled by inverse CDF
    lo, hi = 10 ** (0.6 * mag_range[0]), 10 ** (0.6 * mag_range[1])
    mag_r = np.log10(rng.uniform(lo, hi, n)) / 0.6
    redshift = np.clip(0.02 + 0.035 * (mag_r - 14.0) + rng.normal(0, 0.012, n), 0.005, 0.2)

    morph = _choice(rng, list(shares), list(shares.values()), n)
    # brighter galaxies are larger; scatter as in real size-luminosity relations
    log_re = 0.78 - 0.2 * (mag_r - 16.0) + rng.normal(0, 0.15, n)
    half_light_radius = 10**log_re
    half_light_radius[morph == "elliptical"] *= 0.8
    half_light_radius[morph == "irregular"] *= 1.5

    df = pd.DataFrame(
        {
            "galaxy_index": np.arange(n),
            "ra": ra,
            "dec": dec,
            "mag_r": mag_r,
            "redshift": redshift,
            "morph_class": morph,
            "half_light_radius": half_light_radius,
            "position_angle": rng.uniform(0, 180, n),
        }
    )
    df.insert(0, "iauname", iau_name(ra, dec))
    _add_structure(df, rng)
    _add_traits(df, rng)
    return df


def _add_structure(df: pd.DataFrame, rng: np.random.Generator) -> None:
    """Bulge, disc, arms, bars: the components the renderer draws."""
    n = len(df)
    morph = df["morph_class"].to_numpy()
    is_disc = np.isin(morph, ["lenticular", "spiral", "barred_spiral", "edge_on", "irregular"])

    bulge_class = np.full(n, "none", dtype=object)
    bulge_class[is_disc] = _choice(
        rng, list(BULGE_TO_TOTAL), [0.08, 0.3, 0.34, 0.2, 0.08], is_disc.sum()
    )
    lent = morph == "lenticular"
    bulge_class[lent] = _choice(rng, ["moderate", "large", "dominant"], [0.3, 0.45, 0.25], lent.sum())
    bulge_class[morph == "irregular"] = "none"
    bulge_class[morph == "elliptical"] = "dominant"
    bt = np.array([BULGE_TO_TOTAL[b] for b in bulge_class])
    bt[morph == "elliptical"] = 1.0
    bt[morph == "merger"] = 0.5
    bt[morph == "artifact"] = rng.uniform(0.3, 1.0, (morph == "artifact").sum())
    df["bulge_class"] = bulge_class
    df["bulge_to_total"] = bt
    df["sersic_n"] = np.where(morph == "elliptical", rng.uniform(2.5, 5.0, n), rng.uniform(1.5, 4.0, n))

    # roundness for smooth galaxies; inclination for discs
    axis_ratio = np.where(
        morph == "elliptical",
        np.clip(rng.beta(4.5, 1.8, n), 0.25, 1.0),
        np.clip(rng.beta(3, 2, n), 0.3, 1.0),
    )
    cos_incl = rng.uniform(0.32, 1.0, n)
    edge = morph == "edge_on"
    cos_incl[edge] = rng.uniform(0.02, 0.17, edge.sum())
    # edge-on-ness also occurs in other disc classes at a low rate (no arms visible then)
    df["axis_ratio"] = axis_ratio
    df["cos_inclination"] = cos_incl
    df["disc_thickness"] = rng.uniform(0.08, 0.16, n)
    df["bulge_shape"] = np.where(edge, _choice(rng, ["rounded", "boxy", "none"], [0.5, 0.25, 0.25], n), "")
    df.loc[edge & (df["bulge_shape"] == "none"), "bulge_to_total"] = 0.0

    spiral = np.isin(morph, ["spiral", "barred_spiral"])
    df["arm_count"] = np.where(spiral, _choice(rng, ARM_COUNT_CHOICES, [0.04, 0.55, 0.2, 0.1, 0.07, 0.04], n), 0).astype(int)
    df["arm_winding"] = np.where(spiral, _choice(rng, list(PITCH_DEG), [0.3, 0.45, 0.25], n), "")
    pitch = np.array([PITCH_DEG.get(w, 0.0) for w in df["arm_winding"]]) + rng.normal(0, 2.5, n)
    df["pitch_deg"] = np.where(spiral, np.clip(pitch, 6, 40), 0.0)
    df["arm_strength"] = np.where(spiral, rng.uniform(0.35, 0.95, n), 0.0)
    # weak arm-like structure in some lenticulars: the grey zone volunteers disagree on
    faint_arms = lent & (rng.random(n) < 0.2)
    df.loc[faint_arms, "arm_count"] = 2
    df.loc[faint_arms, "pitch_deg"] = rng.uniform(8, 20, faint_arms.sum())
    df.loc[faint_arms, "arm_strength"] = rng.uniform(0.05, 0.15, faint_arms.sum())
    df.loc[faint_arms, "arm_winding"] = "tight"

    barred = morph == "barred_spiral"
    bar_class = np.full(n, "no", dtype=object)
    bar_class[barred] = _choice(rng, ["strong", "weak"], [0.55, 0.45], barred.sum())
    weak_bar_lent = lent & (rng.random(n) < 0.25)
    bar_class[weak_bar_lent] = "weak"
    df["bar_class"] = bar_class
    df["bar_strength"] = np.select(
        [bar_class == "strong", bar_class == "weak"],
        [rng.uniform(0.15, 0.3, n), rng.uniform(0.05, 0.12, n)],
        0.0,
    )
    df["bar_length"] = rng.uniform(1.1, 1.9, n)  # in disc scale lengths
    df["clumpiness"] = np.where(morph == "irregular", rng.uniform(0.35, 0.7, n), 0.0)
    star_forming = spiral & (rng.random(n) < 0.25)
    df.loc[star_forming, "clumpiness"] = rng.uniform(0.05, 0.15, star_forming.sum())
    # low surface brightness: larger and fainter for its magnitude
    diffuse = (rng.random(n) < 0.05) & np.isin(morph, ["lenticular", "spiral", "irregular", "elliptical"])
    df["diffuse"] = diffuse
    df.loc[diffuse, "half_light_radius"] *= 1.8


def _add_traits(df: pd.DataFrame, rng: np.random.Generator) -> None:
    """Rings, disturbances, dust lanes, neighbours and artefacts, overlaid on the classes."""
    n = len(df)
    morph = df["morph_class"].to_numpy()
    ringable = np.isin(morph, ["lenticular", "spiral", "barred_spiral"])
    # rings are common in barred and lenticular discs, rarer in unbarred spirals
    ring_rate = np.select(
        [morph == "barred_spiral", morph == "lenticular", morph == "spiral"], [0.22, 0.16, 0.06], 0.0
    )
    has_ring = ringable & (rng.random(n) < ring_rate)
    df["ring_strength"] = np.where(has_ring, rng.beta(1.6, 1.8, n), 0.0)
    df["ring_radius"] = np.where(
        df["bar_class"] != "no", df["bar_length"] * rng.uniform(1.0, 1.2, n), rng.uniform(1.5, 2.6, n)
    )  # in disc scale lengths: inner rings sit at the bar ends
    # Gaussian sigma as a fraction of the radius: FWHM 0.14-0.35 of it, rings rather than shoulders
    df["ring_width"] = rng.uniform(0.06, 0.15, n)

    disturbance = np.full(n, "none", dtype=object)
    disturbable = ~np.isin(morph, ["merger", "artifact"])
    u = rng.random(n)
    disturbance[disturbable & (u < 0.09)] = "minor"
    disturbance[disturbable & (u < 0.03)] = "major"
    disturbance[morph == "merger"] = "merger"
    df["disturbance"] = disturbance
    df["tidal_strength"] = np.select(
        [disturbance == "merger", disturbance == "major", disturbance == "minor"],
        [rng.uniform(0.3, 1.0, n), rng.uniform(0.3, 0.8, n), rng.uniform(0.1, 0.4, n)],
        0.0,
    )
    merger = morph == "merger"
    df["companion_flux_ratio"] = np.where(merger, rng.uniform(0.25, 1.0, n), 0.0)
    df["companion_separation"] = np.where(merger, rng.uniform(0.4, 2.2, n), 0.0)  # in half-light radii
    df["companion_angle"] = rng.uniform(0, 360, n)
    df["merger_stage"] = np.where(merger, rng.uniform(0, 1, n), 0.0)  # 0 = separate pair, 1 = coalesced

    edge = morph == "edge_on"
    df["dust_lane"] = edge & (rng.random(n) < 0.45)
    df["dust_opacity"] = np.where(df["dust_lane"], rng.uniform(0.4, 0.9, n), 0.0)

    overlap = (rng.random(n) < 0.06) & (morph != "artifact")
    df["neighbour"] = np.where(overlap, _choice(rng, ["galaxy", "star"], [0.6, 0.4], n), "")
    df["neighbour_flux_ratio"] = np.where(overlap, rng.uniform(0.08, 0.6, n), 0.0)
    df["neighbour_separation"] = np.where(overlap, rng.uniform(0.8, 2.5, n), 0.0)  # half-light radii
    df["neighbour_angle"] = rng.uniform(0, 360, n)

    art = morph == "artifact"
    df["artifact_kind"] = np.where(
        art, _choice(rng, ["bright_star", "satellite_trail", "bad_data"], [0.5, 0.3, 0.2], n), ""
    )
    # every image gets its own seed for noise, field stars and clump positions
    df["render_seed"] = rng.integers(0, 2**31 - 1, n)
    # a few galaxies fall where the survey has no data: the service returns blank pixels
    df["no_coverage"] = rng.random(n) < 0.003


def truth_class_label(df: pd.DataFrame) -> pd.Series:
    """The one hidden label per galaxy used for representation checks: rings and strong
    disturbances override the base class because they dominate what a person would see."""
    label = df["morph_class"].astype(str).copy()
    label[df["ring_strength"] > 0.4] = "ring"
    label[df["disturbance"] == "major"] = "disturbed"
    label[df["morph_class"] == "merger"] = "merger"
    return label
