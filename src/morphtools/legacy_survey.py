"""The Legacy Survey ``fits-cutout`` service as a :class:`~morphtools.cutouts.CutoutSource`.

``GET {url}?ra=..&dec=..&size=..&pixscale=..&layer=..&bands=..`` answers a FITS file whose
primary HDU is a float32 cube (bands, size, size) in nanomaggies. No rate limit is
documented; the client is polite anyway: each thread holds one connection, the caller caps
the threads (:func:`morphtools.cutouts.fetch_shard`'s ``concurrency``), and failures back
off exponentially, honouring ``Retry-After``.
"""

from __future__ import annotations

import numpy as np

from .cutouts import CutoutError, CutoutRequest, cube_from_fits_bytes
from .downloads import RetryPolicy, ThreadSessions, TransientBodyError, get_with_retries

LEGACY_SURVEY_CUTOUT_URL = "https://www.legacysurvey.org/viewer/fits-cutout"
MAX_SERVICE_SIZE = 3000  # pixels; the service refuses larger cutouts


class LegacySurveyClient:
    """Fetches cutouts over HTTP; thread-safe (one session per thread).

    ``layer`` names the data release (``decals-dr5`` as in the paper, or ``ls-dr10``);
    ``bands`` the planes, in order (``grz``). ``policy`` sets timeouts and retries; ``log``
    (a logger) hears about every failed try, so a log shows what the service did even for
    galaxies that arrived in the end.
    """

    def __init__(self, url: str = LEGACY_SURVEY_CUTOUT_URL, layer: str = "ls-dr10", bands: str = "grz",
                 policy: RetryPolicy | None = None, sleep=None, log=None):
        self.url = url
        self.layer = layer
        self.bands = bands
        self.policy = policy or RetryPolicy()
        self._sessions = ThreadSessions()
        self._sleep = sleep
        self._log = log
        self.provenance = {"LAYER": layer, "SERVICE": url[:68]}

    def content_key(self, request: CutoutRequest) -> dict[str, str]:
        """A cached cutout answers only for the same data release (its ``LAYER`` card); the
        service URL may change (a mirror) without the pixels changing."""
        return {"LAYER": self.layer}

    def params(self, request: CutoutRequest) -> dict:
        if request.size > MAX_SERVICE_SIZE:
            raise CutoutError(f"{request.galaxy_id}: {request.size} px exceeds the service's {MAX_SERVICE_SIZE}")
        # 7 decimals of a degree is 0.36 mas: far below a pixel, and stable in the cache key
        return {"ra": f"{request.ra:.7f}", "dec": f"{request.dec:.7f}", "size": str(request.size),
                "pixscale": f"{request.pixscale:.6f}", "layer": self.layer, "bands": self.bands}

    def fetch(self, request: CutoutRequest) -> np.ndarray:
        """The (bands, size, size) cube for ``request``. Raises
        :class:`~morphtools.downloads.DownloadError` when the service does not deliver;
        a body that is not FITS counts as a transient failure (a transfer garbled on the
        way) and is tried again."""

        def parse(body: bytes) -> np.ndarray:
            try:
                return cube_from_fits_bytes(body, name=request.galaxy_id)
            except CutoutError as err:
                raise TransientBodyError(str(err).removeprefix(f"{request.galaxy_id}: ")) from err

        kwargs = {} if self._sleep is None else {"sleep": self._sleep}
        if self._log is not None:
            kwargs["on_attempt"] = lambda outcome: self._log.info("%s: %s", request.galaxy_id, outcome)
        # at most 3 planes of 3000^2 float32 plus headers
        return get_with_retries(self._sessions.get(), self.url, self.params(request), self.policy, parse,
                                max_bytes=len(self.bands) * MAX_SERVICE_SIZE**2 * 4 + (1 << 20), **kwargs)

    def close(self) -> None:
        self._sessions.close()
