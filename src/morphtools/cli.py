"""The ``morphtools`` command: tools that work on a finished workflow results folder,
without Snakemake.

    morphtools similar --ra 185.7 --dec 15.8 -k 18 --results results/
    morphtools similar --id J123456.78+012345.6 --csv similar.csv --png similar.png
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from .similarity import (
    DEFAULT_SPACE,
    DUPLICATE_RADIUS_ARCSEC,
    MATCH_MAX_ARCSEC,
    MATCH_WARNING_ARCSEC,
    METRICS,
    SimilarityError,
    SimilarityIndex,
    thumbnails,
)

GRID_COLUMNS = 10  # thumbnails per row of the PNG grid


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morphtools", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    similar = commands.add_parser(
        "similar", help="galaxies of most similar morphology to a query galaxy",
        description="Exact nearest neighbours of a query galaxy in the workflow's representation space "
                    "(Walmsley et al. 2022, sec. 2.4). Prints rank, galaxy_id, ra, dec, distance.")
    query = similar.add_mutually_exclusive_group(required=True)
    query.add_argument("--id", dest="galaxy_id", help="catalogue galaxy id (the iauname for DECaLS)")
    query.add_argument("--ra", type=float, help="right ascension of the query, degrees (with --dec)")
    similar.add_argument("--dec", type=float, help="declination of the query, degrees (with --ra)")
    similar.add_argument("-k", type=int, default=18, help="neighbours to return (default 18, as the paper's app)")
    similar.add_argument("--results", default="results", help="the workflow's results folder (default results/)")
    similar.add_argument("--survey", default="decals", help="survey subfolder of the results (default decals)")
    similar.add_argument("--space", default=DEFAULT_SPACE,
                         help="stored space: pca_10 (default), pca_15, pca_40, or representation (1280-d)")
    similar.add_argument("--metric", choices=METRICS, default="manhattan", help="distance (default manhattan)")
    similar.add_argument("--duplicate-radius", type=float, default=DUPLICATE_RADIUS_ARCSEC, metavar="ARCSEC",
                         help=f"drop neighbours this close to the query on the sky, the same object catalogued "
                              f"twice (default {DUPLICATE_RADIUS_ARCSEC:g}; 0 keeps them)")
    similar.add_argument("--max-separation", type=float, default=MATCH_MAX_ARCSEC, metavar="ARCSEC",
                         help=f"with --ra/--dec: fail if no catalogue galaxy is this close (default "
                              f"{MATCH_MAX_ARCSEC:g}; a warning beyond {MATCH_WARNING_ARCSEC:g})")
    similar.add_argument("--csv", type=Path, help="also write the table (query as rank 0) to this CSV file")
    similar.add_argument("--png", type=Path, help="also draw the query (green frame) and neighbours to this PNG")
    return parser


def similar(args: argparse.Namespace) -> int:
    from .storage import atomic_path, write_csv

    if (args.ra is None) != (args.dec is None):
        raise SimilarityError("give both --ra and --dec (degrees), or --id")
    if args.k < 1:
        raise SimilarityError(f"-k {args.k}: ask for at least one neighbour")
    index = SimilarityIndex.from_results(args.results, args.survey, args.space)
    if args.galaxy_id is not None:
        query_row = index.row(args.galaxy_id)
        how = f"galaxy {args.galaxy_id}"
    else:
        match = index.match_sky(args.ra, args.dec, max_arcsec=args.max_separation)
        query_row = match.row
        how = f"ra = {args.ra}, dec = {args.dec}: matched {match.galaxy_id} at {match.separation_arcsec:.1f}\""
    radius = args.duplicate_radius if index.has_sky else None
    found = index.neighbours([query_row], args.k, args.metric, radius)
    table = index.table(query_row, found)
    print(f"query: {how}")
    print(f"{len(table) - 1} nearest of {len(index)} galaxies by {args.metric} distance in {args.space} "
          f"({index.dimensions}-d)" + (f", none within {radius:g}\" of the query on the sky" if radius else ""))
    if len(table) - 1 < args.k:
        print(f"note: only {len(table) - 1} galaxies were left to return, not {args.k}")
    print(table.to_string(index=False, formatters={
        "ra": "{:.6f}".format, "dec": "{:+.6f}".format, "distance": "{:.5g}".format,
        "separation_arcsec": "{:.1f}".format}))
    if args.csv:
        write_csv(table, args.csv)
        print(f"wrote {args.csv}")
    if args.png:
        from .plots import galaxy_rows_figure

        crops = {int(s): Path(args.results) / args.survey / "crops" / f"shard_{s}.h5"
                 for s in np.unique(index.shards)} if index.shards is not None else {}
        images = list(thumbnails(index, [index.row(g) for g in table["galaxy_id"]], crops))
        captions = ["query"] + [f"{r}: {d:.3g}" for r, d in zip(table["rank"][1:], table["distance"][1:], strict=True)]
        chunks = range(0, len(images), GRID_COLUMNS)
        with atomic_path(args.png, suffix=".png") as tmp:
            galaxy_rows_figure([images[i:i + GRID_COLUMNS] for i in chunks], tmp,
                               captions=[captions[i:i + GRID_COLUMNS] for i in chunks], query_per_row=False,
                               title=f"{table['galaxy_id'].iloc[0]} and its {len(table) - 1} nearest "
                                     f"({args.metric}, {args.space})")
        print(f"wrote {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.simplefilter("default")

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        return similar(args)
    except SimilarityError as error:
        print(f"morphtools {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
