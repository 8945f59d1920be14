# Per shard: fetch images (cutouts from the sky, or JPEGs from the GZ2 archive), then
# crops for the CNN. Never per galaxy: a shard is the unit of work and of rebuild.


rule decals_cutouts:
    input:
        catalogue=catalogue_input("decals"),
        sky=f"{SIM}/decals/hidden/truth.csv",
    output:
        manifest=f"{RESULTS}/decals/images/shard_{{shard}}.csv",
    params:
        rows_digest=shard_rows_digest("decals"),
        cache_dir=f"{RESOURCES}/cutouts/decals",
        cutouts=config["cutouts"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    log:
        f"{RESULTS}/logs/decals_cutouts/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decals_cutouts/shard_{{shard}}.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/fetch_cutouts.py"


rule gz2_images:
    input:
        catalogue=catalogue_input("gz2"),
        sky=f"{SIM}/gz2/hidden/truth.csv",
    output:
        manifest=f"{RESULTS}/gz2/images/shard_{{shard}}.csv",
    params:
        rows_digest=shard_rows_digest("gz2"),
        image_dir=f"{SIM}/gz2/images_training_rev1",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        f"{RESULTS}/logs/gz2_images/shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gz2_images/shard_{{shard}}.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/render_gz2_images.py"


rule preprocess:
    input:
        manifest=f"{RESULTS}/{{survey}}/images/shard_{{shard}}.csv",
    output:
        crops=f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5",
        qa=f"{RESULTS}/{{survey}}/qa/shard_{{shard}}.csv",
    params:
        image_format=lambda wildcards: IMAGE_FORMAT[wildcards.survey],
        preprocessing=config["preprocessing"],
        bands=config["cutouts"]["bands"],
        max_blank_fraction=config["cutouts"]["max_blank_fraction"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        f"{RESULTS}/logs/preprocess/{{survey}}_shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{survey}}_shard_{{shard}}.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/preprocess_shard.py"


rule qa_summary:
    input:
        qa=lambda wildcards: shard_files(f"{RESULTS}/{{survey}}/qa/shard_{{shard}}.csv", wildcards.survey),
    output:
        summary=report(
            f"{RESULTS}/{{survey}}/qa_summary.csv",
            caption="../report/qa_summary.rst",
            category="Data",
        ),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        f"{RESULTS}/logs/qa_summary_{{survey}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/qa_summary_{{survey}}.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/qa_summary.py"
