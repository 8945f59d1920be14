# Finding interesting anomalies (paper sec. 3): Astronomaly's ellipse features per shard,
# one table of galaxies and features per experiment, then every {experiment} x {method} x
# {repeat} run as its own job, and the metrics, Table 1 and Figs 3-6 from all of them.
# A failed run does not lose the others (run with --keep-going to let the rest finish).


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    method="cnn_gp|ellipse_gp|baseline|random",
    repeat=r"\d+",


rule ellipse_features:
    input:
        manifest=f"{RESULTS}/{{survey}}/images/shard_{{shard}}.csv",
    output:
        features=f"{RESULTS}/{{survey}}/ellipse/shard_{{shard}}.csv",
    params:
        image_format=lambda wildcards: IMAGE_FORMAT[wildcards.survey],
        bands=config["cutouts"]["bands"],
        image_size=config["preprocessing"]["image_size"],
        max_blank_fraction=config["cutouts"]["max_blank_fraction"],
        ellipse=ANOMALY["ellipse"],
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    log:
        f"{RESULTS}/logs/ellipse_features/{{survey}}_shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ellipse_features/{{survey}}_shard_{{shard}}.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/ellipse_features.py"


rule anomaly_experiment:
    input:
        unpack(_experiment_inputs),
    output:
        galaxies=f"{RESULTS}/anomaly/{{experiment}}/galaxies.csv",
        features=f"{RESULTS}/anomaly/{{experiment}}/features.h5",
        summary=f"{RESULTS}/anomaly/{{experiment}}/summary.json",
    params:
        spec=lambda wildcards: EXPERIMENTS[wildcards.experiment],
        filter=ANOMALY["filter"],
        pca_components=ANOMALY["pca_components"],
        rating_scale=ANOMALY["rating_scale"],
        catalogue_digest=lambda wildcards: catalogue_digest(_experiment_survey(wildcards))(wildcards),
    threads: 1
    resources:
        runtime=60,
        mem_mb=4000,
    log:
        f"{RESULTS}/logs/anomaly_experiment/{{experiment}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_experiment/{{experiment}}.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_experiment.py"


rule anomaly_run:
    input:
        galaxies=f"{RESULTS}/anomaly/{{experiment}}/galaxies.csv",
        features=f"{RESULTS}/anomaly/{{experiment}}/features.h5",
    output:
        run=f"{RESULTS}/anomaly/{{experiment}}/runs/{{method}}/repeat_{{repeat}}.csv",
        info=f"{RESULTS}/anomaly/{{experiment}}/runs/{{method}}/repeat_{{repeat}}.json",
    params:
        # only what a run reads, so that e.g. more repeats do not rerun the finished ones
        anomaly={k: ANOMALY[k] for k in ("ratings", "first_batch", "batch_size", "tradeoff", "normalize_y",
                                         "rating_scale", "isolation_trees", "forest_trees", "neighbour_alpha",
                                         "rated_ranking")},
        # every method sees the same seed in a repeat: the GP methods share the first batch
        seed=lambda wildcards: config["seed"] + int(wildcards.repeat),
    threads: 1
    resources:
        runtime=60,
        mem_mb=3000,
    log:
        f"{RESULTS}/logs/anomaly_run/{{experiment}}_{{method}}_{{repeat}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_run/{{experiment}}_{{method}}_{{repeat}}.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_run.py"


rule anomaly_metrics:
    input:
        runs=anomaly_runs(),
        infos=anomaly_runs(suffix=".json"),
        galaxies=expand(f"{RESULTS}/anomaly/{{experiment}}/galaxies.csv", experiment=list(EXPERIMENTS)),
        summaries=expand(f"{RESULTS}/anomaly/{{experiment}}/summary.json", experiment=list(EXPERIMENTS)),
    output:
        table=report(
            f"{RESULTS}/anomaly/table1.csv",
            caption="../report/anomaly_table1.rst",
            category="Anomalies",
            subcategory="Table 1",
        ),
        metrics=f"{RESULTS}/anomaly/metrics.csv",
        summary=f"{RESULTS}/anomaly/metrics_summary.csv",
        curves=f"{RESULTS}/anomaly/curves.csv",
    params:
        experiments=list(EXPERIMENTS),  # in the order of input.galaxies and input.summaries
        run_keys=anomaly_run_keys(),  # (experiment, method, repeat) of each of input.runs
        left_out=EXPERIMENTS_LEFT_OUT,  # experiments that cannot run on this data, and why
        top_n=ANOMALY["top_n"],
        curve_max_n=ANOMALY["curve_max_n"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{RESULTS}/logs/anomaly_metrics.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_metrics.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_metrics.py"


rule anomaly_curves_figure:
    input:
        curves=f"{RESULTS}/anomaly/curves.csv",
        metrics=f"{RESULTS}/anomaly/metrics.csv",
    output:
        figure=report(
            f"{RESULTS}/figures/anomaly_curves_{{survey}}.png",
            caption="../report/anomaly_curves.rst",
            category="Anomalies",
            subcategory="RWS and accuracy (Figs 3, 5)",
            labels={"survey": "{survey}"},
        ),
    params:
        experiments=lambda wildcards: [n for n, e in EXPERIMENTS.items() if e["survey"] == wildcards.survey],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{RESULTS}/logs/anomaly_curves_figure_{{survey}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_curves_figure_{{survey}}.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_curves_figure.py"


MAP_EXPERIMENT = ANOMALY["figures"]["map_experiment"]


rule anomaly_map_figure:
    input:
        galaxies=f"{RESULTS}/anomaly/{MAP_EXPERIMENT}/galaxies.csv",
        features=f"{RESULTS}/anomaly/{MAP_EXPERIMENT}/features.h5",
        runs=[f"{RESULTS}/anomaly/{MAP_EXPERIMENT}/runs/{m}/repeat_0.csv"
              for m in ("baseline", "cnn_gp") if m in EXPERIMENTS[MAP_EXPERIMENT]["methods"]],
    output:
        figure=report(
            f"{RESULTS}/figures/anomaly_map.png",
            caption="../report/anomaly_map.rst",
            category="Anomalies",
            subcategory="Maps of the features (Fig. 4)",
        ),
    params:
        experiment=MAP_EXPERIMENT,
        methods=[m for m in ("baseline", "cnn_gp") if m in EXPERIMENTS[MAP_EXPERIMENT]["methods"]],
        projection=ANOMALY["figures"]["projection"],
        neighbours=ANOMALY["figures"]["umap_neighbours"],
        seed=config["seed"],
    threads: 1
    resources:
        runtime=60,
        mem_mb=4000,
    log:
        f"{RESULTS}/logs/anomaly_map_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_map_figure.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_map_figure.py"


TOP_EXPERIMENTS = [n for n, e in EXPERIMENTS.items() if "cnn_gp" in e["methods"]]


rule anomaly_top_figure:
    input:
        galaxies=expand(f"{RESULTS}/anomaly/{{experiment}}/galaxies.csv", experiment=TOP_EXPERIMENTS),
        runs=expand(f"{RESULTS}/anomaly/{{experiment}}/runs/cnn_gp/repeat_0.csv", experiment=TOP_EXPERIMENTS),
        crops=[f for s in anomaly_surveys() for f in shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", s)],
    output:
        figure=report(
            f"{RESULTS}/figures/anomaly_top.png",
            caption="../report/anomaly_top.rst",
            category="Anomalies",
            subcategory="Top of the ranking (Fig. 6)",
        ),
    params:
        experiments=TOP_EXPERIMENTS,
        surveys={n: EXPERIMENTS[n]["survey"] for n in TOP_EXPERIMENTS},
        top_pool=ANOMALY["figures"]["top_pool"],
        examples=ANOMALY["figures"]["top_examples"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{RESULTS}/logs/anomaly_top_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly_top_figure.tsv"
    conda:
        "../envs/anomaly.yaml"
    script:
        "../scripts/anomaly_top_figure.py"
