rule sample_galaxies_figure:
    input:
        decals_crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals"),
        decals_manifests=shard_files(f"{RESULTS}/{{survey}}/images/shard_{{shard}}.csv", "decals"),
        decals_truth=f"{SIM}/decals/hidden/truth.csv",
        gz2_crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "gz2"),
        gz2_manifests=shard_files(f"{RESULTS}/{{survey}}/images/shard_{{shard}}.csv", "gz2"),
        gz2_truth=f"{SIM}/gz2/hidden/truth.csv",
    output:
        figure=report(
            f"{RESULTS}/figures/sample_galaxies.png",
            caption="../report/sample_galaxies.rst",
            category="Data",
        ),
    params:
        examples_per_class=config["figures"]["examples_per_class"],
        seed=config["seed"],
        bands=config["cutouts"]["bands"],
        crop_to=config["preprocessing"]["crop_to"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        f"{RESULTS}/logs/sample_galaxies_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_galaxies_figure.tsv"
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/sample_galaxies_figure.py"
