"""The Legacy Survey cutout client and the shard download path against the local
stand-in, with every fault the real service can show."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from morphtools.cutouts import (
    cutout_path,
    cutout_request,
    fetch_shard,
    read_fits_cutout,
    rejection_path,
)
from morphtools.downloads import RetryPolicy
from morphtools.legacy_survey import LegacySurveyClient
from morphtools.preprocessing import PreprocessingParams, preprocess_shard
from morphtools.progress import progress_counter
from morphtools.simulation.render import DECALS
from morphtools.simulation.sky import SimulatedSky
from morphtools.standins import StandinServer, position_key

# a timeout with room for a loaded CI machine; stalls last well past it
POLICY = RetryPolicy(max_tries=3, timeout_s=1.5, backoff_s=0.05, max_backoff_s=0.1, max_retry_after_s=5)


def key_of(row):
    # the position the client sends (7 decimals), as the stand-in keys it
    return position_key(round(row.ra, 7), round(row.dec, 7))


def galaxy_of_request(record, rows):
    keys = {key_of(r): r.galaxy_id for r in rows.itertuples()}
    return keys[record.key]


def files_on_disk(cache_dir, pattern):
    return sorted(p for p in cache_dir.rglob(pattern))


# one fault plan per galaxy: (faults, sticky, expected status, words expected in the QA reason)
FAULT_PLAN = [
    (["500", "500"], False, "fetched", None),
    (["503"], False, "fetched", None),
    (["429"], False, "fetched", None),
    (["stall"], False, "fetched", None),
    (["truncate"], False, "fetched", None),
    (["garbage"], False, "fetched", None),
    (["blank"], True, "rejected", "blank (no coverage)"),
    (["bands2"], True, "rejected", "expected 3 bands, got 2"),
    (["500"], True, "failed", "after 3 tries: HTTP 500; HTTP 500; HTTP 500"),
    (["stall"], True, "failed", "after 3 tries: timeout"),
    (["truncate"], True, "failed", "truncated body"),
    (["429"], True, "failed", "HTTP 429 (Retry-After 1 s)"),
]


def test_every_fault_lands_in_the_qa_table_and_a_rerun_fetches_only_what_is_missing(small_decals_survey, tmp_path):
    rows = small_decals_survey["catalogue"].head(20)
    sky = SimulatedSky(small_decals_survey["truth"], DECALS)
    cache = tmp_path / "cache"
    with StandinServer(sky, stall_s=5.0, retry_after_s=1) as server:
        plan = dict(zip(rows["galaxy_id"], FAULT_PLAN, strict=False))
        for row in rows.itertuples():
            if row.galaxy_id in plan:
                faults, sticky, _, _ = plan[row.galaxy_id]
                server.faults.add(key_of(row), faults, sticky=sticky)
        client = LegacySurveyClient(server.cutout_url, "ls-dr10", "grz", POLICY)
        manifest = fetch_shard(rows, client, cache, concurrency=4)
        status = dict(zip(manifest["galaxy_id"], manifest["status"], strict=True))
        expected = {gid: plan[gid][2] if gid in plan else "fetched" for gid in rows["galaxy_id"]}
        assert status == expected
        assert server.max_in_flight <= 4

        # the 429 was honoured: the retry came at least Retry-After (1 s) later
        g429 = rows["galaxy_id"].iloc[2]
        times = [r.started for r in server.cutout_requests() if galaxy_of_request(r, rows) == g429]
        assert len(times) == 2 and times[1] - times[0] >= 1.0

        # no corrupt file on disk: every FITS is complete and valid, nothing half-written
        fits_files = files_on_disk(cache, "*.fits")
        assert sorted(p.stem for p in fits_files) == sorted(g for g, s in status.items() if s == "fetched")
        for path in fits_files:
            assert read_fits_cutout(path).shape[0] == 3
        assert files_on_disk(cache, "*.part") == []

        # every failure is in the shard's QA table with its reason
        _, crops, _, qa = preprocess_shard(manifest, PreprocessingParams(image_size=64, resize_to=32, crop_to=24,
                                                                         thumbnail_size=16), "fits")
        qa = qa.set_index("galaxy_id")
        assert len(qa) == len(rows) and len(crops) == sum(s == "fetched" for s in status.values())
        for gid, (_, _, want, words) in plan.items():
            if want == "fetched":
                assert qa.loc[gid, "status"] == "ok"
            else:
                assert qa.loc[gid, "status"] == want and qa.loc[gid, "stage"] == "fetch"
                assert gid in qa.loc[gid, "reason"] and words in qa.loc[gid, "reason"], qa.loc[gid, "reason"]

        # re-run with the service still failing: nothing cached is asked for, permanent
        # rejections are remembered, and only the failed galaxies are asked again
        failed = {g for g, s in status.items() if s == "failed"}
        server.reset_log()
        manifest = fetch_shard(rows, client, cache, concurrency=4)
        asked = {galaxy_of_request(r, rows) for r in server.cutout_requests()}
        assert asked == failed
        again = dict(zip(manifest["galaxy_id"], manifest["status"], strict=True))
        assert {g for g, s in again.items() if s == "cached"} == {g for g, s in status.items() if s == "fetched"}
        assert {g for g, s in again.items() if s == "rejected"} == {g for g, s in status.items() if s == "rejected"}

        # the service recovers: the next run fetches exactly the missing galaxies, once each
        server.faults.clear()
        server.reset_log()
        manifest = fetch_shard(rows, client, cache, concurrency=4)
        asked = [galaxy_of_request(r, rows) for r in server.cutout_requests()]
        assert sorted(asked) == sorted(failed)
        final = manifest.set_index("galaxy_id")["status"]
        assert set(final[list(failed)]) == {"fetched"}


@pytest.mark.parametrize("cap", [1, 3])
def test_concurrency_reaches_but_never_exceeds_the_cap(small_decals_survey, tmp_path, cap):
    rows = small_decals_survey["catalogue"].head(12)
    flat = FlatSky()
    with StandinServer(flat, latency_s=0.1) as server:
        client = LegacySurveyClient(server.cutout_url, "ls-dr10", "grz", POLICY)
        manifest = fetch_shard(rows, client, tmp_path, concurrency=cap)
        assert set(manifest["status"]) == {"fetched"}
        assert server.max_in_flight == cap


class FlatSky:
    """A cutout source with no rendering cost: the service's latency is all there is."""

    bands = "grz"

    def fetch(self, request):
        rng = np.random.default_rng(abs(hash(request.size)) % 2**32)
        return rng.normal(1.0, 0.1, (3, request.size, request.size)).astype(np.float32)


def test_changed_geometry_is_refetched_and_progress_shows_rate(small_decals_survey, tmp_path, capsys):
    rows = small_decals_survey["catalogue"].head(6).copy()
    with StandinServer(FlatSky()) as server:
        client = LegacySurveyClient(server.cutout_url, "ls-dr10", "grz", POLICY)
        fetch_shard(rows, client, tmp_path, progress=lambda total: progress_counter(total, "cutouts"))
        assert "galaxy/s" in capsys.readouterr().err  # tqdm's rate (and ETA) display
        rows.loc[rows.index[0], "petro_th50"] *= 2  # a remeasured radius changes the field of view
        server.reset_log()
        manifest = fetch_shard(rows, client, tmp_path)
        assert len(server.cutout_requests()) == 1
        assert manifest["status"].tolist() == ["fetched"] + ["cached"] * 5
        new = cutout_request(*rows.iloc[0][["galaxy_id", "ra", "dec", "petro_th50", "petro_th90"]])
        assert read_fits_cutout(cutout_path(tmp_path, rows["galaxy_id"].iloc[0])).shape[1] == new.size


def test_service_errors_and_bad_ids_are_clear(tmp_path):
    with StandinServer(FlatSky()) as server:
        client = LegacySurveyClient(server.cutout_url + "/nowhere", "ls-dr10", "grz", POLICY)
        rows = pd.DataFrame({"galaxy_id": ["J1"], "ra": [1.0], "dec": [2.0], "petro_th50": [2.0],
                             "petro_th90": [5.0]})
        manifest = fetch_shard(rows, client, tmp_path)
        assert manifest["status"].tolist() == ["failed"]
        assert manifest["reason"].iloc[0].startswith("J1: HTTP 404 from http://127.0.0.1")
        assert len(server.requests) == 1  # a 404 is not retried
        assert not rejection_path(cutout_path(tmp_path, "J1")).exists()  # and not remembered either
        with pytest.raises(ValueError, match="cannot name a file"):
            fetch_shard(rows.assign(galaxy_id=["../../etc/passwd"]), client, tmp_path)


KILLED_RUN = textwrap.dedent("""
    import sys
    import pandas as pd
    from morphtools.cutouts import fetch_shard
    from morphtools.downloads import RetryPolicy
    from morphtools.legacy_survey import LegacySurveyClient

    url, rows_csv, cache = sys.argv[1:4]
    rows = pd.read_csv(rows_csv, dtype={"galaxy_id": str})
    client = LegacySurveyClient(url, "ls-dr10", "grz", RetryPolicy(max_tries=3, timeout_s=5, backoff_s=0.05))
    fetch_shard(rows, client, cache, concurrency=2)
""")


def test_a_download_killed_mid_shard_loses_nothing_and_fetches_nothing_twice(small_decals_survey, tmp_path):
    rows = small_decals_survey["catalogue"].head(24)[["galaxy_id", "ra", "dec", "petro_th50", "petro_th90"]]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    cache = tmp_path / "cache"
    with StandinServer(FlatSky(), latency_s=0.15) as server:
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, server.cutout_url, str(tmp_path / "rows.csv"),
                                 str(cache)], env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 60
            while len(files_on_disk(cache, "*.fits")) < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        saved = {p.stem for p in files_on_disk(cache, "*.fits")}
        assert 8 <= len(saved) < len(rows)  # killed mid-shard
        for path in files_on_disk(cache, "*.fits"):
            read_fits_cutout(path)  # whatever is under a final name is complete

        server.reset_log()
        manifest = fetch_shard(rows, LegacySurveyClient(server.cutout_url, "ls-dr10", "grz", POLICY), cache,
                               concurrency=2)
        asked = [galaxy_of_request(r, rows) for r in server.cutout_requests()]
    assert sorted(asked) == sorted(set(rows["galaxy_id"]) - saved)  # each missing galaxy once, nothing saved again
    status = manifest.set_index("galaxy_id")["status"]
    assert set(status[list(saved)]) == {"cached"} and set(status) == {"cached", "fetched"}
    assert files_on_disk(cache, "*.part") == []  # what the killed run left half-written is gone
