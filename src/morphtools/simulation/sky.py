"""The simulated sky: catalogue measurements of simulated galaxies (NSA-like Petrosian
radii and fluxes) and a cutout source that renders whatever galaxy lies at a requested
position, as the Legacy Survey service returns whatever the sky holds there."""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord

from ..cutouts import CutoutRequest
from .population import disc_scale_length
from .render import DECALS, SurveyModel, render, render_digest, sersic_b

NSA_BAD_PETRO_THETA = 27.653702  # the snapped value NSA assigns to some failed sizes


def _circular_profile(row, r):
    """Azimuthally averaged r-band surface brightness (arbitrary units) at radii ``r``."""
    re = float(row["half_light_radius"])
    bt = float(row["bulge_to_total"])
    n = float(row["sersic_n"])
    prof = np.zeros_like(r)
    if bt > 0:
        r_b = re if row["morph_class"] == "elliptical" else re * (0.22 + 0.3 * bt)
        q = float(row["axis_ratio"]) if row["morph_class"] == "elliptical" else 0.8
        r_b = r_b * np.sqrt(q)
        bulge = np.exp(-sersic_b(n) * ((r / r_b) ** (1 / n) - 1))
        prof += bt * bulge / np.trapezoid(bulge * 2 * np.pi * r, r)
    if bt < 1:
        h = disc_scale_length(re, bt)
        q = max(float(row["cos_inclination"]), float(row["disc_thickness"]))
        h = h * np.sqrt(q)
        disc = np.exp(-r / h)
        prof += (1 - bt) * disc / np.trapezoid(disc * 2 * np.pi * r, r)
    return prof


def petrosian_radii(row, petro_ratio: float = 0.2) -> tuple[float, float, float]:
    """(petro_theta, petro_th50, petro_th90) in arcsec from the circularised profile, as
    SDSS defines them: the Petrosian radius where local / mean-interior surface brightness
    falls to 0.2, and the radii holding 50% and 90% of the flux within twice that."""
    re = float(row["half_light_radius"])
    r = np.linspace(re * 1e-3, re * 25, 4000)
    prof = _circular_profile(row, r)
    cum = np.concatenate([[0], np.cumsum(0.5 * (prof[1:] * r[1:] + prof[:-1] * r[:-1]) * np.diff(r))]) * 2 * np.pi
    mean_inside = cum / (np.pi * r**2)
    ratio = prof / np.maximum(mean_inside, 1e-300)
    below = np.nonzero(ratio < petro_ratio)[0]
    r_p = r[below[0]] if len(below) else r[-1]
    flux_p = np.interp(2 * r_p, r, cum)
    th50 = np.interp(0.5 * flux_p, cum, r)
    th90 = np.interp(0.9 * flux_p, cum, r)
    return float(r_p), float(th50), float(th90)


def nsa_like_table(truth: pd.DataFrame, seed: int, bad_size_fraction: float = 0.004) -> pd.DataFrame:
    """The NSA columns the paper's selection reads, with measurement scatter, including
    galaxies the cuts remove (too faint, too bright, too small, bad snapped sizes)."""
    rng = np.random.default_rng(seed)
    radii = np.array([petrosian_radii(row) for _, row in truth.iterrows()])
    scatter = np.exp(rng.normal(0, 0.05, (len(truth), 3)))
    radii = radii * scatter
    bad = rng.random(len(truth)) < bad_size_fraction
    radii[bad, 0] = NSA_BAD_PETRO_THETA + rng.uniform(-5e-4, 5e-4, bad.sum())
    flux_r = 10 ** ((22.5 - truth["mag_r"].to_numpy() + rng.normal(0, 0.03, len(truth))) / 2.5)
    # NSA's SERSIC_NMGY holds F, N, u, g, r, i, z; index 4 is r
    colour_offsets = np.array([3.5, 2.8, 1.8, 0.6, 0.0, -0.3, -0.55])
    sersic_nmgy = flux_r[:, None] * 10 ** (-0.4 * colour_offsets[None, :])
    distance_modulus = 5 * np.log10(np.maximum(truth["redshift"].to_numpy(), 1e-3) * 4283e6 / 10)
    return pd.DataFrame(
        {
            "IAUNAME": truth["iauname"].to_numpy(),
            "RA": truth["ra"].to_numpy(),
            "DEC": truth["dec"].to_numpy(),
            "Z": truth["redshift"].to_numpy(),
            "PETRO_THETA": radii[:, 0],
            "PETRO_TH50": radii[:, 1],
            "PETRO_TH90": radii[:, 2],
            "SERSIC_NMGY": list(sersic_nmgy),
            "ELPETRO_ABSMAG_R": truth["mag_r"].to_numpy() - distance_modulus,
        }
    )


class SimulatedSky:
    """A :class:`~morphtools.cutouts.CutoutSource` over a simulated truth table: a request
    at (ra, dec) renders the catalogue galaxy nearest that position, offset as the request
    is; where no galaxy lies within ``match_radius_arcsec`` the sky is blank (no coverage)."""

    def __init__(self, truth: pd.DataFrame, survey: SurveyModel = DECALS, match_radius_arcsec: float = 5.0):
        self.truth = truth.reset_index(drop=True)
        self.survey = survey
        self.bands = "".join(survey.bands)
        self.match_radius = match_radius_arcsec
        self._coords = SkyCoord(self.truth["ra"].to_numpy() * u.deg, self.truth["dec"].to_numpy() * u.deg)

    def _galaxy_at(self, request: CutoutRequest) -> pd.Series | None:
        """The truth row of the galaxy nearest the request's centre, or None (no coverage)."""
        target = SkyCoord(request.ra * u.deg, request.dec * u.deg)
        idx, sep, _ = target.match_to_catalog_sky(self._coords)
        return None if sep.arcsec > self.match_radius else self.truth.iloc[int(idx)]

    def content_key(self, request: CutoutRequest) -> dict[str, str]:
        """Header cards a cached cutout (or a remembered rejection) must carry to answer
        ``request``: the digest of the rendering and of the galaxy it shows, or of blank
        sky where no galaxy is near (``SIMRENDR``). The request's centre, size and pixel
        scale are compared separately."""
        row = self._galaxy_at(request)
        shown = {"blank_sky": True, "match_radius_arcsec": self.match_radius} if row is None else row
        return {"SIMRENDR": render_digest(shown, self.survey)}

    def fetch(self, request: CutoutRequest) -> np.ndarray:
        row = self._galaxy_at(request)
        if row is None:
            return np.zeros((len(self.survey.bands), request.size, request.size), np.float32)
        # the galaxy sits where it is on the sky relative to the requested centre
        d_ra = (row["ra"] - request.ra) * np.cos(np.radians(request.dec)) * 3600.0
        d_dec = (row["dec"] - request.dec) * 3600.0
        return render(row, self.survey, request.size, request.pixscale, offset_arcsec=(-d_ra, d_dec))
