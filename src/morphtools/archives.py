"""Images from archives: the Kaggle GZ2 download and the GZ DECaLS PNG zips, read safely.

Safety: a member's name is checked (no absolute paths, drive letters, backslashes, ``..``
parts or NUL) and is never used as an output path; outputs are named from the galaxy id
(itself checked to be a plain file name). Symbolic links and directories are refused,
sizes are capped while copying (a member's header can lie), zipfile checks each member's
CRC, and every file is written atomically. Only the members a shard needs are extracted.

An *image index* (CSV: ``galaxy_id, container, member, size``) maps each galaxy to where
its image is: ``container`` is a zip file (``member`` is its name inside) or a directory
(``member`` is a path relative to it, used in place).
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .storage import atomic_path, write_csv

MAX_IMAGE_BYTES = 20 << 20  # a 424 x 424 JPEG/PNG is ~10-500 kB; anything this big is not one
MAX_INNER_ZIP_BYTES = 64 << 30
INDEX_COLUMNS = ["galaxy_id", "container", "member", "size"]


class ArchiveError(ValueError):
    """An archive that cannot be used; the message names the archive and member."""


def check_member_name(name: str, archive) -> str:
    """The member's name as a relative POSIX path, or :class:`ArchiveError` for one that
    could escape a folder it were extracted into."""
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"{archive}: member {name!r} has a NUL or backslash in its name")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise ArchiveError(f"{archive}: member {name!r} points outside the archive (absolute path or '..')")
    return str(path)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest, max_bytes: int, archive) -> int:
    """Copy one regular member to ``dest`` atomically; returns the bytes written."""
    if info.is_dir() or _is_symlink(info):
        raise ArchiveError(f"{archive}: member {info.filename!r} is not a regular file")
    if info.file_size > max_bytes:
        raise ArchiveError(f"{archive}: member {info.filename!r} is {info.file_size} bytes, limit {max_bytes}")
    copied = 0
    try:
        with zf.open(info) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise ArchiveError(f"{archive}: member {info.filename!r} expands past {max_bytes} bytes")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise ArchiveError(f"{archive}: member {info.filename!r} is damaged ({err})") from err
    return copied


def open_zip(path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveError(f"{path}: not a readable zip archive ({err})") from err


def zip_members(zf: zipfile.ZipFile, archive) -> list[tuple[str, zipfile.ZipInfo]]:
    """(checked name, info) of every regular file member."""
    out = []
    for info in zf.infolist():
        name = check_member_name(info.filename, archive)
        if info.is_dir():
            continue
        if _is_symlink(info):
            raise ArchiveError(f"{archive}: member {info.filename!r} is a symbolic link")
        out.append((name, info))
    return out


def index_images(containers, pattern: re.Pattern, archive_label, log=None) -> pd.DataFrame:
    """The image index of every member/file whose name matches ``pattern`` (group 1: the
    galaxy id) in the given zip files and directories. A galaxy found twice keeps its
    first image."""
    from .cutouts import check_galaxy_id

    rows = []
    for container in containers:
        container = Path(container)
        if container.is_dir():
            for root, _dirs, files in os.walk(container):
                for file in files:
                    rel = (Path(root) / file).relative_to(container).as_posix()
                    match = pattern.search(rel)
                    if match and not (Path(root) / file).is_symlink():
                        rows.append((match.group(1), str(container), rel, (Path(root) / file).stat().st_size))
        else:
            with open_zip(container) as zf:
                for name, info in zip_members(zf, container):
                    match = pattern.search(name)
                    if match:
                        rows.append((match.group(1), str(container), info.filename, info.file_size))
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    for gid in index["galaxy_id"]:
        try:
            check_galaxy_id(gid)
        except ValueError as err:
            raise ArchiveError(f"{archive_label}: {err}") from None
    duplicated = index["galaxy_id"].duplicated()
    if duplicated.any() and log:
        log.warning("%s: %d galaxies have more than one image; the first is used (e.g. %s)", archive_label,
                    int(duplicated.sum()), index.loc[duplicated, "galaxy_id"].iloc[0])
    return index[~duplicated].reset_index(drop=True)


def read_index(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"galaxy_id": str, "container": str, "member": str}, keep_default_na=False)


def extract_shard_images(galaxy_ids, index: pd.DataFrame, image_dir, suffix: str, missing_reason: str,
                         max_bytes: int = MAX_IMAGE_BYTES, progress=None, log=None) -> pd.DataFrame:
    """Make the image of every galaxy in ``galaxy_ids`` available as a file; returns the
    manifest ``galaxy_id, path, status, reason``.

    Images in a directory are used where they are (``cached``); zip members are copied to
    ``image_dir/<bucket>/<id><suffix>`` unless a file of the member's size is already there
    (``cached``) else ``fetched``. A galaxy with no image, or a damaged one, is
    ``rejected`` with the reason (``missing_reason`` names where it was looked for).
    """
    from .cutouts import MANIFEST_COLUMNS, check_galaxy_id, cutout_path

    by_id = index.set_index("galaxy_id")
    zips: dict[str, zipfile.ZipFile] = {}
    records = []
    ids = [str(g) for g in galaxy_ids]
    iterator = progress(ids, total=len(ids)) if progress is not None else ids
    try:
        for gid in iterator:
            check_galaxy_id(gid)
            if gid not in by_id.index:
                records.append((gid, "", "rejected", f"{gid}: {missing_reason}"))
                continue
            entry = by_id.loc[gid]
            container = Path(entry["container"])
            if container.is_dir():
                path = container / check_member_name(entry["member"], container)
                status = "cached" if path.is_file() else "rejected"
                records.append((gid, str(path) if status == "cached" else "", status,
                                "" if status == "cached" else f"{gid}: {path} is listed but missing"))
                continue
            dest = cutout_path(image_dir, gid).with_suffix(suffix)  # named from the id, never the member
            if dest.is_file() and dest.stat().st_size == int(entry["size"]):
                records.append((gid, str(dest), "cached", ""))
                continue
            try:
                zf = zips.get(str(container)) or zips.setdefault(str(container), open_zip(container))
                info = zf.getinfo(entry["member"])
                copy_member(zf, info, dest, max_bytes, container)
            except (ArchiveError, KeyError) as err:
                if log:
                    log.warning("galaxy %s: %s", gid, err)
                records.append((gid, "", "rejected", f"{gid}: {err}"))
                continue
            records.append((gid, str(dest), "fetched", ""))
    finally:
        for zf in zips.values():
            zf.close()
    return pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)


# -- Kaggle "Galaxy Zoo - The Galaxy Challenge" ---------------------------------------------------------------------

KAGGLE_SOLUTIONS = "training_solutions_rev1.csv"
KAGGLE_IMAGE = re.compile(r"(?:^|/)images_training_rev1/(\d+)\.jpg$")
KAGGLE_SOLUTIONS_MEMBER = re.compile(r"(?:^|/)training_solutions_rev1\.csv$")
KAGGLE_INNER_ZIP = re.compile(r"(?:^|/)(training_solutions_rev1|images_training_rev1)\.zip$")


def _kaggle_containers(archive: Path, work_dir: Path, log=None) -> list[Path]:
    """Where the Kaggle files may be: the archive itself (zip or folder) and the two inner
    zips it holds (the competition download nests one zip per file). Inner zips inside a
    zip are extracted to ``work_dir`` (only those two: not the test images or benchmarks)."""
    containers = [archive]
    if archive.is_dir():
        for path in sorted(archive.iterdir()):
            if KAGGLE_INNER_ZIP.search(path.name):
                containers.append(path)
        return containers
    with open_zip(archive) as zf:
        for name, info in zip_members(zf, archive):
            match = KAGGLE_INNER_ZIP.search(name)
            if not match:
                continue
            dest = work_dir / f"{match.group(1)}.zip"
            if not (dest.is_file() and dest.stat().st_size == info.file_size):
                if log:
                    log.info("extracting %s from %s (%.1f MB)", name, archive, info.file_size / 1e6)
                copy_member(zf, info, dest, MAX_INNER_ZIP_BYTES, archive)
            containers.append(dest)
    return containers


def _read_kaggle_solutions(containers, archive) -> tuple[pd.DataFrame, str]:
    from .decision_tree import gz2_columns

    for container in containers:
        if container.is_dir():
            candidates = [p for p in (container / KAGGLE_SOLUTIONS, container / "training_solutions_rev1"
                                      / KAGGLE_SOLUTIONS) if p.is_file()]
            if candidates:
                table, where = pd.read_csv(candidates[0]), str(candidates[0])
                break
        else:
            with open_zip(container) as zf:
                names = [name for name, _ in zip_members(zf, container) if KAGGLE_SOLUTIONS_MEMBER.search(name)]
                if names:
                    with zf.open(names[0]) as f:
                        table, where = pd.read_csv(f), f"{container}:{names[0]}"
                    break
    else:
        raise ArchiveError(f"{archive}: no {KAGGLE_SOLUTIONS} (looked in {[str(c) for c in containers]})")
    missing = [c for c in ["GalaxyID", *gz2_columns()] if c not in table.columns]
    if missing:
        raise ArchiveError(f"{where}: missing columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    ids = pd.to_numeric(table["GalaxyID"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        i = int(np.flatnonzero(ids.isna() | (ids != ids.round()))[0])
        raise ArchiveError(f"{where}: row {i + 1}: GalaxyID {table['GalaxyID'].iloc[i]!r} is not an integer")
    table["GalaxyID"] = ids.astype(np.int64)
    if table["GalaxyID"].duplicated().any():
        raise ArchiveError(f"{where}: duplicate GalaxyID {table.loc[table['GalaxyID'].duplicated(), 'GalaxyID'].iloc[0]}")
    return table, where


def unpack_kaggle_gz2(archive, work_dir, solutions_out, index_out, expected_galaxies: int | None = None,
                      log=None) -> dict:
    """Ingest the user's Kaggle GZ2 download: write the solutions table to ``solutions_out``
    and the image index to ``index_out`` (``GalaxyID`` -> ``images_training_rev1/<id>.jpg``).

    ``archive`` is the competition zip (holding ``training_solutions_rev1.zip`` and
    ``images_training_rev1.zip``, or those files directly) or a folder holding the zips or
    their unzipped contents. Checks the counts: every solution row must have an image,
    and with ``expected_galaxies`` (61,578 for the real set) the number of rows must match;
    otherwise :class:`ArchiveError` names the archive and the first missing galaxies.
    Returns the counts.
    """
    archive = Path(archive)
    if not archive.exists():
        raise ArchiveError(f"{archive}: Kaggle archive not found (download 'Galaxy Zoo - The Galaxy Challenge' "
                           f"from Kaggle and set survey.kaggle.archive to it)")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    containers = _kaggle_containers(archive, work_dir, log)
    solutions, where = _read_kaggle_solutions(containers, archive)
    index = index_images(containers, KAGGLE_IMAGE, archive, log)
    solution_ids = set(solutions["GalaxyID"].astype(str))
    imaged = set(index["galaxy_id"])
    without_image = sorted(solution_ids - imaged, key=int)
    unlabelled = len(imaged - solution_ids)
    counts = {"solutions": len(solutions), "images": len(index), "without_image": len(without_image),
              "images_without_solution": unlabelled}
    if expected_galaxies is not None and len(solutions) != expected_galaxies:
        raise ArchiveError(f"{where}: {len(solutions)} galaxies, expected {expected_galaxies} "
                           f"(survey.kaggle.expected_galaxies)")
    if without_image and expected_galaxies is not None:
        raise ArchiveError(f"{archive}: {len(without_image)} of {len(solutions)} galaxies in {KAGGLE_SOLUTIONS} have no "
                           f"images_training_rev1/<GalaxyID>.jpg, e.g. {without_image[:5]}")
    if log:
        log.info("Kaggle GZ2 archive %s: %s", archive, counts)
        if without_image:
            log.warning("%d galaxies have no image (they are rejected in the QA tables), e.g. %s",
                        len(without_image), without_image[:5])
    with atomic_path(solutions_out) as tmp:
        solutions.to_csv(tmp, index=False)
    write_csv(index[index["galaxy_id"].isin(solution_ids)], index_out)
    return counts


# -- GZ DECaLS PNG zips (Zenodo) ---------------------------------------------------------------------------------

GZ_DECALS_PNG = re.compile(r"(?:^|/)(J[0-9][0-9.+\-]*)\.png$")


def index_gz_decals_pngs(zip_paths, index_out, log=None) -> int:
    """Index the GZ DECaLS PNG zips (``J###/<iauname>.png``, 424 x 424 RGB) by iauname;
    returns the number of images."""
    index = index_images([Path(p) for p in zip_paths], GZ_DECALS_PNG, ", ".join(map(str, zip_paths)), log)
    if not len(index):
        raise ArchiveError(f"{', '.join(map(str, zip_paths))}: no J*/<iauname>.png images found")
    write_csv(index, index_out)
    if log:
        log.info("%d GZ DECaLS PNG images indexed", len(index))
    return len(index)
