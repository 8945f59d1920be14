"""The HTTP layer against the local stand-in: retries, Retry-After, resumable checked
downloads, and the Zenodo record API."""

from datetime import UTC, datetime

import pytest

from morphtools.downloads import (
    ChecksumError,
    GaveUpError,
    PermanentHTTPError,
    RemoteFile,
    RetryPolicy,
    download_file,
    file_md5,
    get_with_retries,
    new_session,
    partial_path,
    retry_after_seconds,
    zenodo_record_files,
)
from morphtools.standins import StandinServer

# a timeout with room for a loaded CI machine; stalls last well past it
FAST = RetryPolicy(max_tries=4, timeout_s=1.5, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=30)


def test_retry_after_header_forms():
    assert retry_after_seconds("30") == 30
    now = datetime(2022, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Tue, 01 Mar 2022 12:00:45 GMT", now) == 45
    assert retry_after_seconds("Tue, 01 Mar 2022 11:00:00 GMT", now) == 0  # in the past: go now
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff_s=2, max_backoff_s=10)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]


@pytest.fixture
def payload(tmp_path):
    (tmp_path / "served").mkdir()
    path = tmp_path / "served" / "gz_decals_volunteers_5.csv"
    path.write_bytes(b"iauname,smooth-or-featured_smooth\n" + b"".join(b"J%06d,%d\n" % (i, i % 40) for i in range(40000)))
    return path


def test_transient_statuses_are_retried_and_retry_after_is_honoured(payload):
    sleeps = []
    with StandinServer(files={"/f": payload}, retry_after_s=7) as server:
        server.faults.add("/f", ["500", "429", "503"])
        body = get_with_retries(new_session(), server.url + "/f", None, FAST, sleep=sleeps.append)
        assert body == payload.read_bytes()
        # 500 -> backoff 0.01; 429 -> its Retry-After (7 s); 503 -> backoff 0.04 (third retry)
        assert sleeps == [0.01, 7.0, 0.04]
        assert [r.status for r in server.requests] == ["500", "429", "503", "200"]


def test_retry_after_is_capped(payload):
    sleeps = []
    with StandinServer(files={"/f": payload}, retry_after_s=3600) as server:
        server.faults.add("/f", ["429"])
        get_with_retries(new_session(), server.url + "/f", None, FAST, sleep=sleeps.append)
    assert sleeps == [30]


def test_permanent_errors_are_not_retried_and_giving_up_lists_every_try(payload):
    with StandinServer(files={"/f": payload}, stall_s=5) as server:
        with pytest.raises(PermanentHTTPError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/nowhere"):
            get_with_retries(new_session(), server.url + "/nowhere", None, FAST, sleep=lambda s: None)
        assert len(server.requests) == 1
        server.faults.add("/f", ["500", "stall", "truncate", "500"])
        with pytest.raises(GaveUpError) as info:
            get_with_retries(new_session(), server.url + "/f", None, FAST, sleep=lambda s: None)
        message = str(info.value)
        assert "after 4 tries" in message and "/f" in message
        assert "HTTP 500; timeout" in message and "truncated body" in message


def test_download_resumes_a_broken_transfer_with_a_range_request(payload, tmp_path):
    dest = tmp_path / "out" / payload.name
    with StandinServer(files={"/f": payload}) as server:
        server.faults.add("/f", ["truncate"])
        remote = RemoteFile(payload.name, server.url + "/f", md5=file_md5(payload), size=payload.stat().st_size)
        download_file(remote, dest, policy=FAST, sleep=lambda s: None)
        ranges = [r.status for r in server.requests]
    assert dest.read_bytes() == payload.read_bytes()
    assert ranges == ["200 truncated", "206"]  # the second request asked only for the missing half
    assert not partial_path(dest).exists()


def test_a_corrupt_download_is_refetched_and_a_persistently_corrupt_one_fails_leaving_nothing(payload, tmp_path):
    dest = tmp_path / payload.name
    with StandinServer(files={"/f": payload}) as server:
        remote = RemoteFile(payload.name, server.url + "/f", md5=file_md5(payload), size=payload.stat().st_size)
        server.faults.add("/f", ["corrupt"])
        download_file(remote, dest, policy=FAST, sleep=lambda s: None)
        assert file_md5(dest) == remote.md5 and len(server.requests) == 2
        dest.unlink()
        server.faults.add("/f", ["corrupt"], sticky=True)
        with pytest.raises(ChecksumError, match=r"MD5 [0-9a-f]{32} differs from the published"):
            download_file(remote, dest, policy=FAST, sleep=lambda s: None)
    assert not dest.exists() and not partial_path(dest).exists()


def test_a_stalled_download_gives_up_but_keeps_its_bytes_for_the_next_run(payload, tmp_path):
    dest = tmp_path / payload.name
    with StandinServer(files={"/f": payload}, stall_s=5) as server:
        remote = RemoteFile(payload.name, server.url + "/f", md5=file_md5(payload), size=payload.stat().st_size)
        server.faults.add("/f", ["truncate", "stall", "stall", "stall", "stall"])
        with pytest.raises(GaveUpError, match="bytes kept in"):
            download_file(remote, dest, policy=FAST, sleep=lambda s: None)
        assert not dest.exists() and 0 < partial_path(dest).stat().st_size < remote.size
        download_file(remote, dest, policy=FAST, sleep=lambda s: None)  # the next run resumes
        assert server.requests[-1].status == "206"
    assert file_md5(dest) == remote.md5


def test_zenodo_record_lists_files_with_checksums_and_downloads_verify(payload, tmp_path):
    with StandinServer(zenodo_records={"4573248": {payload.name: payload}}) as server:
        files = zenodo_record_files(server.zenodo_api, "4573248", policy=FAST)
        remote = files[payload.name]
        assert remote.md5 == file_md5(payload) and remote.size == payload.stat().st_size
        assert remote.url.endswith(f"/api/records/4573248/files/{payload.name}/content")
        server.faults.add(f"/api/records/4573248/files/{payload.name}/content", ["503", "truncate"])
        download_file(remote, tmp_path / payload.name, policy=FAST, sleep=lambda s: None)
        with pytest.raises(PermanentHTTPError, match="404"):
            zenodo_record_files(server.zenodo_api, "999", policy=FAST)
    assert file_md5(tmp_path / payload.name) == remote.md5


def test_zenodo_legacy_answer_format(monkeypatch):
    import morphtools.downloads as downloads

    legacy = {"files": [{"filename": "a.csv", "filesize": 10, "checksum": "0123456789abcdef0123456789abcdef",
                         "links": {"download": "https://zenodo.org/record/1/files/a.csv"}}]}
    monkeypatch.setattr(downloads, "get_with_retries", lambda *a, **k: legacy)
    files = zenodo_record_files("https://zenodo.org/api", 1)
    assert files["a.csv"] == RemoteFile("a.csv", "https://zenodo.org/record/1/files/a.csv",
                                        "0123456789abcdef0123456789abcdef", 10)
