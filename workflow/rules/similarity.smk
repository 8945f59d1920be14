# Similarity search (paper sec. 2.4) and representation maps (sec. 2.3): the forum-tag test
# of the search with its figure (Fig. 2), and UMAP maps of PCA-15 with thumbnails
# (Fig. 1; A1 and A2 for featured-only and spiral-only galaxies). The search itself is the
# `morphtools similar` command, which reads the same results folder.


rule similarity_tags:
    input:
        space=space_file("decals", SIMILARITY["space"]),
        catalogue=catalogue_input("decals"),
        tags=f"{SIM}/decals/talk_tags.csv",
        crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals"),
    output:
        table=report(
            f"{RESULTS}/similarity/tag_precision.csv",
            caption="../report/tag_precision.rst",
            category="Similarity search",
            subcategory="Forum tags",
        ),
        summary=report(
            f"{RESULTS}/similarity/tag_precision_summary.csv",
            caption="../report/tag_precision.rst",
            category="Similarity search",
            subcategory="Forum tags",
        ),
        neighbours=f"{RESULTS}/similarity/tag_neighbours.csv",
        figure=report(
            f"{RESULTS}/figures/similarity_tags.png",
            caption="../report/similarity_tags.rst",
            category="Similarity search",
            subcategory="Forum tags",
        ),
    params:
        space=SIMILARITY["space"],
        search={k: SIMILARITY[k] for k in ("k", "metric", "duplicate_radius_arcsec")},
        tags=SIMILARITY["tags"],
        seed=config["seed"],
        shards=SHARDS,
    threads: 1
    resources:
        runtime=30,
        mem_mb=2000,
    log:
        f"{RESULTS}/logs/similarity_tags.log",
    benchmark:
        f"{RESULTS}/benchmarks/similarity_tags.tsv"
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/similarity_tags.py"


rule representation_map:
    input:
        space=space_file("decals", MAPS["space"]),
        representation=f"{RESULTS}/decals/representation.h5",
        catalogue=catalogue_input("decals"),
        crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals"),
    output:
        coordinates=f"{RESULTS}/maps/umap_{{subset}}.csv",
        figure=report(
            f"{RESULTS}/figures/umap_{{subset}}.png",
            caption="../report/representation_map.rst",
            category="Representation maps",
            labels={"galaxies": "{subset}"},
        ),
    params:
        space=MAPS["space"],
        thresholds=lambda wildcards: MAPS["subsets"][wildcards.subset],
        umap={k: MAPS[k] for k in ("n_neighbors", "min_dist")},
        cells=MAPS["cells"],
        seed=config["seed"],
        shards=SHARDS,
    threads: 1  # UMAP with a fixed seed runs single-threaded
    resources:
        runtime=60,
        mem_mb=3000,
    log:
        f"{RESULTS}/logs/representation_map/{{subset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_map/{{subset}}.tsv"
    conda:
        "../envs/maps.yaml"
    script:
        "../scripts/representation_map.py"
