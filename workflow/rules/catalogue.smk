# Catalogues are checkpoints: shard jobs read their own rows' digest from them.
# survey.source picks the DECaLS-side inputs (common.smk: decals_catalogue_inputs), survey.gz2
# the GZ2 solutions table.


checkpoint decals_catalogue:
    input:
        **decals_catalogue_inputs(),
    output:
        catalogue=f"{RESULTS}/decals/catalogue.csv",
    params:
        source=SOURCE,
        cuts=config["selection"],
        shards=config["shards"],
        catalogue=config["survey"].get("catalogue"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        f"{RESULTS}/logs/decals_catalogue.log",
    benchmark:
        f"{RESULTS}/benchmarks/decals_catalogue.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/build_decals_catalogue.py"


checkpoint gz2_catalogue:
    input:
        solutions=(f"{SIM}/gz2/training_solutions_rev1.csv" if GZ2_SOURCE == "simulated"
                   else f"{KAGGLE}/training_solutions_rev1.csv"),
    output:
        catalogue=f"{RESULTS}/gz2/catalogue.csv",
    params:
        shards=config["shards"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{RESULTS}/logs/gz2_catalogue.log",
    benchmark:
        f"{RESULTS}/benchmarks/gz2_catalogue.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/build_gz2_catalogue.py"
