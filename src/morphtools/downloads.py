"""HTTP for flaky public services: one retry policy (exponential backoff, Retry-After
honoured), requests with a body parser, whole-file downloads that resume and are checked
against published sizes and MD5 checksums, and the Zenodo record API.

Every failure message names the URL and the history of attempts, so a log line or QA
row says what the service did ("HTTP 503, timeout, HTTP 429 (Retry-After 30 s), ...").
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

USER_AGENT = "morphtools/0.1 (reproduction of Walmsley et al. 2022; polite client: capped concurrency, backoff)"
CHUNK_BYTES = 1 << 20
# small enough that a transfer cut short keeps all but its last chunk for resuming
DOWNLOAD_CHUNK_BYTES = 64 << 10


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. Times in seconds.

    ``timeout_s`` bounds the connection and every wait for the next bytes of a response
    (a stalled server), not the whole transfer. Retry ``n`` (1-based) waits
    ``min(backoff_s * 2**(n-1), max_backoff_s)``; a 429 or 503 answer's ``Retry-After`` is
    used instead when given, capped at ``max_retry_after_s``.
    """

    max_tries: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    max_retry_after_s: float = 600.0

    def __post_init__(self):
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError(f"retry policy times must be positive: {self}")

    @classmethod
    def from_config(cls, cfg: dict) -> RetryPolicy:
        return cls(max_tries=int(cfg["max_tries"]), timeout_s=float(cfg["timeout_s"]),
                   backoff_s=float(cfg["backoff_s"]), max_backoff_s=float(cfg["max_backoff_s"]),
                   max_retry_after_s=float(cfg["max_retry_after_s"]))

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) without a Retry-After."""
        return min(self.backoff_s * 2 ** (retry - 1), self.max_backoff_s)


class DownloadError(Exception):
    """A request that did not succeed; the message names the URL and what happened."""


class PermanentHTTPError(DownloadError):
    """An answer that retrying will not change (e.g. 400, 403, 404)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class GaveUpError(DownloadError):
    """Every try failed with a transient error (timeouts, 429, 5xx, broken bodies)."""


class TransientBodyError(Exception):
    """Raised by a body parser for a body that may be fine on the next try (a truncated
    or garbled transfer)."""


class ChecksumError(DownloadError):
    """A complete download whose size or MD5 differs from the published one."""


RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when
    absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def transient_status_outcome(resp, policy: RetryPolicy) -> tuple[str, float | None]:
    """(description, seconds to wait or None for the policy's backoff) of a retryable HTTP
    status; a ``Retry-After`` header sets the wait, capped at ``policy.max_retry_after_s``."""
    after = retry_after_seconds(resp.headers.get("Retry-After"))
    if after is None:
        return f"HTTP {resp.status_code}", None
    return f"HTTP {resp.status_code} (Retry-After {after:g} s)", min(after, policy.max_retry_after_s)


def describe_exception(err: BaseException) -> str:
    """A short name for a transport failure: ``timeout``, ``connection error``,
    ``broken body``, with the library's detail."""
    if isinstance(err, requests.Timeout) or "timed out" in str(err).lower():
        kind = "timeout"
    elif isinstance(err, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(err):
        kind = "truncated body"
    elif isinstance(err, requests.ConnectionError):
        kind = "connection error"
    else:
        kind = type(err).__name__
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{kind} ({detail[:160]})"


def new_session(pool_size: int = 10) -> requests.Session:
    """A session with a connection pool of ``pool_size`` and no urllib3-level retries (the
    policy here does the retrying, so that it is counted and logged)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _read_body(response: requests.Response, max_bytes: int) -> bytes:
    """The whole body, refusing more than ``max_bytes`` and checking Content-Length
    (a connection closed early must not pass as a short, valid answer)."""
    chunks, total = [], 0
    for chunk in response.iter_content(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise DownloadError(f"{response.url}: body larger than {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    declared = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity") not in ("", "identity")
    if declared is not None and declared.isdigit() and not encoded and int(declared) != len(body):
        raise TransientBodyError(f"truncated body ({len(body)} of {declared} bytes)")
    return body


def get_with_retries(session: requests.Session, url: str, params: dict | None, policy: RetryPolicy,
                     parse: Callable[[bytes], object] = lambda body: body, max_bytes: int = 1 << 30,
                     sleep: Callable[[float], None] = time.sleep, on_attempt: Callable[[str], None] | None = None):
    """GET ``url`` and return ``parse(body)``, retrying transient failures per ``policy``.

    Transient: timeouts, connection errors, bodies cut short, statuses 408/425/429/5xx, and a
    parser raising :class:`TransientBodyError`. Other 4xx answers raise
    :class:`PermanentHTTPError` at once; running out of tries raises :class:`GaveUpError`
    with every attempt's outcome. ``on_attempt`` sees each failed attempt's description.
    """
    history: list[str] = []
    for attempt in range(1, policy.max_tries + 1):
        delay = None
        try:
            with session.get(url, params=params, timeout=(policy.timeout_s, policy.timeout_s), stream=True) as resp:
                status = resp.status_code
                if status == 200:
                    return parse(_read_body(resp, max_bytes))
                if status in RETRY_STATUSES:
                    outcome, delay = transient_status_outcome(resp, policy)
                else:
                    snippet = resp.text[:200].strip().replace("\n", " ") if resp.content else ""
                    raise PermanentHTTPError(f"HTTP {status} from {resp.url}" + (f": {snippet}" if snippet else ""),
                                             status)
        except (requests.RequestException, TransientBodyError) as err:
            outcome = describe_exception(err) if isinstance(err, requests.RequestException) else str(err)
        history.append(outcome)
        if on_attempt is not None:
            on_attempt(outcome)
        if attempt < policy.max_tries:
            sleep(policy.backoff(attempt) if delay is None else delay)
    shown = requests.Request("GET", url, params=params).prepare().url
    raise GaveUpError(f"gave up on {shown} after {policy.max_tries} tries: {'; '.join(history)}")


# -- whole files ---------------------------------------------------------------------------------------------------


def file_md5(path, chunk: int = CHUNK_BYTES) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """A published file: where it is, and its size (bytes) and MD5 when published."""

    name: str
    url: str
    md5: str | None = None
    size: int | None = None


def partial_path(dest: Path) -> Path:
    """Where an unfinished download of ``dest`` accumulates (kept between tries and runs
    so a transfer resumes; never under the final name)."""
    return dest.with_name(dest.name + ".partial")


def _verify(path: Path, remote: RemoteFile) -> None:
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise ChecksumError(f"{remote.url}: downloaded {size} bytes, published size is {remote.size}")
    if remote.md5:
        got = file_md5(path)
        if got != remote.md5.lower():
            raise ChecksumError(f"{remote.url}: MD5 {got} differs from the published {remote.md5}")


def download_file(remote: RemoteFile, dest, session: requests.Session | None = None,
                  policy: RetryPolicy = RetryPolicy(), progress=None, sleep: Callable[[float], None] = time.sleep,
                  log=None) -> Path:
    """Download ``remote`` to ``dest`` and verify it; returns ``dest``.

    Bytes go to ``dest.partial``; a broken transfer resumes with an HTTP Range request
    (a server that ignores Range starts it again). Only a complete file whose size and MD5
    match the published ones is renamed to ``dest``; a mismatch deletes the partial file
    and tries once more from the start, then raises :class:`ChecksumError`. An attempt
    that adds bytes does not count against ``policy.max_tries``: a big file over a flaky
    link gets there. ``progress`` is a tqdm-like factory ``(total, initial) -> bar``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    session = session or new_session(1)
    fresh_starts = 0
    history: list[str] = []
    fruitless = 0
    bar = None
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            if remote.size is not None and have == remote.size:
                try:
                    _verify(part, remote)
                except ChecksumError as err:
                    part.unlink()
                    fresh_starts += 1
                    if fresh_starts > 1:
                        raise
                    if log:
                        log.warning("%s; starting again", err)
                    continue
                os.replace(part, dest)
                return dest
            if remote.size is not None and have > remote.size:
                part.unlink()
                continue
            headers = {"Range": f"bytes={have}-"} if have else {}
            delay = None
            gained = 0
            try:
                with session.get(remote.url, headers=headers, stream=True,
                                 timeout=(policy.timeout_s, policy.timeout_s)) as resp:
                    status = resp.status_code
                    if status in (200, 206):
                        append = status == 206 and have > 0
                        if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                            raise DownloadError(f"{remote.url}: answered Range bytes={have}- with "
                                                f"Content-Range {resp.headers.get('Content-Range')!r}")
                        if bar is None and progress is not None:
                            total = remote.size or (int(resp.headers.get("Content-Length", 0)) + (have if append else 0))
                            bar = progress(total or None, have if append else 0)
                        elif bar is not None and not append:
                            bar.reset()
                        with open(part, "ab" if append else "wb") as out:
                            for chunk in resp.iter_content(DOWNLOAD_CHUNK_BYTES):
                                out.write(chunk)
                                gained += len(chunk)
                                if bar is not None:
                                    bar.update(len(chunk))
                        declared = resp.headers.get("Content-Length")
                        if declared is not None and declared.isdigit() and int(declared) != gained:
                            raise TransientBodyError(f"truncated body ({gained} of {declared} bytes)")
                        if gained and remote.size is None:
                            # no published size: a clean end of body is the end of the file
                            try:
                                _verify(part, remote)
                            except ChecksumError:
                                part.unlink()
                                raise
                            os.replace(part, dest)
                            return dest
                        if gained:
                            continue
                        outcome = f"HTTP {status} with no new bytes"
                    if status == 416:  # the partial file already holds everything (or more)
                        part.unlink(missing_ok=True)
                        outcome = "HTTP 416 (range not satisfiable; starting again)"
                    elif status in RETRY_STATUSES:
                        outcome, delay = transient_status_outcome(resp, policy)
                    else:
                        raise PermanentHTTPError(f"HTTP {status} from {remote.url}", status)
            except (requests.RequestException, TransientBodyError) as err:
                outcome = describe_exception(err) if isinstance(err, requests.RequestException) else str(err)
            history.append(outcome + (f" after {gained} new bytes" if gained else ""))
            if log:
                log.warning("%s: %s", remote.url, history[-1])
            fruitless = 0 if gained else fruitless + 1
            if fruitless >= policy.max_tries:
                raise GaveUpError(f"gave up on {remote.url} after {len(history)} tries "
                                  f"({part.stat().st_size if part.exists() else 0} bytes kept in {part} "
                                  f"for the next run): {'; '.join(history[-policy.max_tries:])}")
            if not gained:
                sleep(policy.backoff(fruitless) if delay is None else delay)
    finally:
        if bar is not None:
            bar.close()


# -- Zenodo -----------------------------------------------------------------------------------------------------------


def zenodo_record_files(api_url: str, record: str | int, session: requests.Session | None = None,
                        policy: RetryPolicy = RetryPolicy()) -> dict[str, RemoteFile]:
    """The files of a Zenodo record, by name, from ``{api_url}/records/{record}``.

    Reads the current (InvenioRDM) answer, ``files: [{key, size, checksum: "md5:...",
    links: {self}}]``, and the legacy one (``filename``, ``filesize``, bare MD5,
    ``links.download``)."""
    import json

    url = f"{api_url.rstrip('/')}/records/{record}"
    session = session or new_session(1)

    def parse(body: bytes):
        try:
            return json.loads(body)
        except ValueError as err:
            raise TransientBodyError(f"not JSON ({err})") from err

    answer = get_with_retries(session, url, None, policy, parse, max_bytes=50 << 20)
    entries = answer.get("files")
    if isinstance(entries, dict):  # some API versions nest the list under "entries"
        entries = entries.get("entries", [])
        entries = list(entries.values()) if isinstance(entries, dict) else entries
    if not entries:
        raise DownloadError(f"{url}: the record lists no files (is the record id right?)")
    files = {}
    for entry in entries:
        name = entry.get("key") or entry.get("filename")
        if not name:
            raise DownloadError(f"{url}: a file entry has no name: {entry!r:.200}")
        links = entry.get("links", {})
        link = links.get("self") or links.get("content") or links.get("download")
        if not link:
            link = f"{url}/files/{name}/content"
        if link.endswith(f"/files/{name}") and "/api/" in link:
            link += "/content"  # InvenioRDM: the entry itself is metadata, /content is the bytes
        checksum = entry.get("checksum")
        md5 = None
        if checksum:
            algo, _, value = checksum.partition(":")
            md5 = value if value and algo.lower() == "md5" else (algo if not value else None)
        size = entry.get("size", entry.get("filesize"))
        files[name] = RemoteFile(name=name, url=link, md5=md5, size=int(size) if size is not None else None)
    return files


class ThreadSessions:
    """One :class:`requests.Session` per thread (sessions are not thread-safe)."""

    def __init__(self, pool_size: int = 1):
        self._local = threading.local()
        self._pool_size = pool_size
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self._pool_size)
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()
            self._all.clear()
