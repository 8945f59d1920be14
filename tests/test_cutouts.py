import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from morphtools.cutouts import (
    CutoutError,
    CutoutRequest,
    cutout_path,
    cutout_request,
    fetch_shard,
    gz_decals_pixscale,
    read_fits_cutout,
    validate_cube,
    write_fits_atomic,
)


def test_gz_decals_field_of_view():
    # th50 = 5", th90 = 12": min(0.2, 0.24) = 0.2"/px -> 84.8" -> 324 native pixels
    assert gz_decals_pixscale(5, 12) == pytest.approx(0.2)
    req = cutout_request("G", 10.0, 20.0, 5, 12)
    assert (req.size, req.pixscale) == (324, 0.262)
    # small galaxies hit the 0.1"/px floor: 42.4" across
    assert gz_decals_pixscale(1, 2) == 0.1
    assert cutout_request("G", 0, 0, 1, 2).size == 162
    # large ones: 0.8"/px -> 339.2" needs 1295 native pixels, so 512 at 0.6625"/px
    req = cutout_request("G", 0, 0, 20, 50)
    assert req.size == 512 and req.pixscale == pytest.approx(339.2 / 512)


def test_fits_round_trip(tmp_path):
    cube = np.random.default_rng(0).normal(0, 1, (3, 40, 40)).astype(np.float32)
    path = tmp_path / "a.fits"
    write_fits_atomic(path, cube, CutoutRequest("G1", 1.0, 2.0, 40, 0.262))
    np.testing.assert_array_equal(read_fits_cutout(path), cube)
    header = fits.getheader(path)
    assert header["BANDS"] == "grz" and header["OBJECT"] == "G1" and header["PIXSCALE"] == 0.262
    assert not list(tmp_path.glob("*.part"))


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    good = np.ones((3, 40, 40), np.float32)
    with pytest.raises(CutoutError, match="missing"):
        read_fits_cutout(tmp_path / "nope.fits")
    write_fits_atomic(tmp_path / "t.fits", good)
    data = (tmp_path / "t.fits").read_bytes()
    (tmp_path / "t.fits").write_bytes(data[: len(data) // 2])
    with pytest.raises(CutoutError, match="t.fits"):
        read_fits_cutout(tmp_path / "t.fits")
    write_fits_atomic(tmp_path / "two.fits", good[:2])
    with pytest.raises(CutoutError, match="expected 3 bands, got 2"):
        read_fits_cutout(tmp_path / "two.fits")
    blank = good.copy()
    blank[1, :25] = 0  # 62% of band 1 empty
    with pytest.raises(CutoutError, match="band 1 is 62% blank"):
        validate_cube(blank, name="G9")
    blank[1] = 1
    blank[2, :5] = np.nan  # 12.5% is tolerated and NaNs become zero
    out = validate_cube(blank)
    assert np.isfinite(out).all()


class FakeSource:
    """Returns a valid cube, except for galaxies told to be blank or to fail."""

    bands = "grz"

    def __init__(self, blank=(), fail=()):
        self.blank, self.fail, self.calls = set(blank), set(fail), []

    def fetch(self, request):
        self.calls.append(request.galaxy_id)
        if request.galaxy_id in self.fail:
            raise ConnectionError("service unavailable")
        if request.galaxy_id in self.blank:
            return np.zeros((3, request.size, request.size), np.float32)
        return np.full((3, request.size, request.size), 0.5, np.float32)


def test_fetch_shard_records_failures_and_uses_the_cache(tmp_path):
    rows = pd.DataFrame({"galaxy_id": ["A", "B", "C", "D"], "ra": [1.0, 2, 3, 4], "dec": [0.0, 0, 0, 0],
                         "petro_th50": [2.0] * 4, "petro_th90": [5.0] * 4})
    source = FakeSource(blank={"B"}, fail={"C"})
    manifest = fetch_shard(rows, source, tmp_path)
    status = dict(zip(manifest["galaxy_id"], manifest["status"], strict=True))
    # B's data is unusable (rejected); C's service failed (failed: asked again next run)
    assert status == {"A": "fetched", "B": "rejected", "C": "failed", "D": "fetched"}
    reasons = dict(zip(manifest["galaxy_id"], manifest["reason"], strict=True))
    assert "B" in reasons["B"] and "blank" in reasons["B"]
    assert "C" in reasons["C"] and "ConnectionError" in reasons["C"]
    assert sorted(p.name for p in tmp_path.rglob("*.fits")) == ["A.fits", "D.fits"]
    assert cutout_path(tmp_path, "A").exists()
    # a second run fetches only what is missing: not the remembered blank B, but the failed
    # C, and D whose cached file was corrupted
    cutout_path(tmp_path, "D").write_bytes(b"garbage")
    source.calls.clear()
    manifest = fetch_shard(rows, source, tmp_path)
    assert sorted(source.calls) == ["C", "D"]
    assert dict(zip(manifest["galaxy_id"], manifest["status"], strict=True)) == {
        "A": "cached", "B": "rejected", "C": "failed", "D": "fetched"}
    # a stricter blank limit is a different question: B is asked again
    source.calls.clear()
    fetch_shard(rows, source, tmp_path, max_blank_fraction=0.1)
    assert sorted(source.calls) == ["B", "C"]


def test_a_galaxy_without_radii_is_recorded_not_fatal(tmp_path):
    rows = pd.DataFrame({"galaxy_id": ["A", "B"], "ra": [1.0, 2.0], "dec": [0.0, 0.0],
                         "petro_th50": [2.0, np.nan], "petro_th90": [5.0, 5.0]})
    source = FakeSource()
    manifest = fetch_shard(rows, source, tmp_path)
    assert manifest["status"].tolist() == ["fetched", "rejected"] and source.calls == ["A"]
    assert manifest["reason"].iloc[1].startswith("B: no usable Petrosian radii (petro_th50=nan")


class KeyedSource(FakeSource):
    """A source whose cutouts answer only while their ``content_key`` card matches."""

    def __init__(self, version="v1"):
        super().__init__()
        self.version = version

    def content_key(self, request):
        return {"SIMRENDR": f"{self.version}-{request.galaxy_id}"}


def test_a_cached_cutout_from_other_data_or_code_is_fetched_again(tmp_path):
    rows = pd.DataFrame({"galaxy_id": ["A", "B"], "ra": [1.0, 2.0], "dec": [0.0, 0.0],
                         "petro_th50": [2.0, 2.0], "petro_th90": [5.0, 5.0]})
    source = KeyedSource("v1")
    fetch_shard(rows, source, tmp_path)
    assert fits.getheader(cutout_path(tmp_path, "A"))["SIMRENDR"] == "v1-A"
    source.calls.clear()
    assert fetch_shard(rows, source, tmp_path)["status"].tolist() == ["cached", "cached"] and not source.calls
    # a new rendering (or data release) makes every cached cutout stale
    source.version = "v2"
    assert fetch_shard(rows, source, tmp_path)["status"].tolist() == ["fetched", "fetched"]
    assert sorted(source.calls) == ["A", "B"]
    assert fits.getheader(cutout_path(tmp_path, "B"))["SIMRENDR"] == "v2-B"
    # a cutout written before sources had keys carries none: fetched again, once
    write_fits_atomic(cutout_path(tmp_path, "A"), np.full((3, 20, 20), 0.5, np.float32),
                      cutout_request("A", 1.0, 0.0, 2.0, 5.0), "grz")
    source.calls.clear()
    assert fetch_shard(rows, source, tmp_path)["status"].tolist() == ["fetched", "cached"]
    assert source.calls == ["A"]


def test_legacy_survey_cutouts_answer_only_for_their_data_release(tmp_path):
    from morphtools.cutouts import cached_cutout_problem
    from morphtools.legacy_survey import LegacySurveyClient

    request = cutout_request("A", 1.0, 0.0, 2.0, 5.0)
    dr5 = LegacySurveyClient(url="http://127.0.0.1:1/cutout", layer="decals-dr5")
    path = cutout_path(tmp_path, "A")
    # as fetch_shard wrote them before content keys: the provenance cards alone
    write_fits_atomic(path, np.full((3, request.size, request.size), 0.5, np.float32), request, "grz",
                      dr5.provenance)
    assert cached_cutout_problem(path, request, "grz", dr5.content_key(request)) is None
    # a mirror serves the same release
    mirror = LegacySurveyClient(url="http://127.0.0.2:1/cutout", layer="decals-dr5")
    assert cached_cutout_problem(path, request, "grz", mirror.content_key(request)) is None
    dr10 = LegacySurveyClient(url="http://127.0.0.1:1/cutout", layer="ls-dr10")
    problem = cached_cutout_problem(path, request, "grz", dr10.content_key(request))
    assert "LAYER 'decals-dr5', want 'ls-dr10'" in problem
