"""Adapter: download one public file (the NSA by URL, or a file of a Zenodo record) and
check it against the published size and MD5."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from morphtools.downloads import RemoteFile, RetryPolicy, download_file, new_session, zenodo_record_files  # noqa: E402
from morphtools.progress import progress_counter  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402

dest = Path(snakemake.output[0])
log = log_to(snakemake.log[0], f"download.{dest.name}")
policy = RetryPolicy.from_config(snakemake.params.retry)
session = new_session(1)
if hasattr(snakemake.params, "zenodo_record"):
    files = zenodo_record_files(snakemake.params.zenodo_api, snakemake.params.zenodo_record, session, policy)
    if dest.name not in files:
        raise FileNotFoundError(f"Zenodo record {snakemake.params.zenodo_record} has no file {dest.name!r}; "
                                f"it lists {sorted(files)}")
    remote = files[dest.name]
else:
    remote = RemoteFile(name=dest.name, url=snakemake.params.url, md5=snakemake.params.md5)
log.info("downloading %s (%s bytes, MD5 %s) to %s", remote.url, remote.size or "unknown", remote.md5 or "not published",
         dest)


def bar(total, initial):
    return progress_counter(total, dest.name, unit="B", unit_scale=True, unit_divisor=1024, initial=initial)


download_file(remote, dest, session, policy, progress=bar, log=log)
log.info("%s: complete and verified", dest)
