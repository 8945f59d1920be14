# The representation every tool stands on: pretrain EfficientNetB0 on the DECaLS votes,
# embed every crops shard of both surveys with it (GZ2 too, as in the paper), merge per
# survey, reduce with incremental PCA, and check the result against the hidden truth.


rule pretrain:
    input:
        crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals"),
        catalogue=catalogue_input("decals"),
        # pretraining.initial_weights: the weights this variant starts from, if any
        initial_weights=lambda wildcards: PRETRAINING["initial_weights"].get(wildcards.variant, []),
    output:
        weights=f"{RESULTS}/models/{{variant}}/model.weights.h5",
        history=report(
            f"{RESULTS}/models/{{variant}}/history.csv",
            caption="../report/training_history.rst",
            category="Representation",
            subcategory="Pretraining",
        ),
    params:
        questions=lambda wildcards: variant_questions(wildcards.variant),
        crop_to=config["preprocessing"]["crop_to"],
        training=TRAINING_SETTINGS,
        seed=config["seed"],
        catalogue_digest=catalogue_digest("decals"),
        # kept when the job fails or is killed, so a rerun resumes from the last epoch
        checkpoint_dir=f"{RESULTS}/models/{{variant}}/checkpoint",
    threads: 8  # capped at --cores by Snakemake; the framework uses what it is given
    resources:
        gpu=config["gpus"],
        mem_mb=8000,
        runtime=24 * 60,
    log:
        f"{RESULTS}/logs/pretrain/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain/{{variant}}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/pretrain.py"


rule embed:
    input:
        crops=f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5",
        weights=model_weights(EMBEDDING_MODEL),
    output:
        embeddings=f"{RESULTS}/{{survey}}/embeddings/shard_{{shard}}.h5",
    params:
        model=EMBEDDING_MODEL,
        questions=variant_questions(EMBEDDING_MODEL),
        crop_to=config["preprocessing"]["crop_to"],
        dropout=PRETRAINING["dropout"],
        batch_size=config["embedding"]["batch_size"],
    threads: config["embedding"]["threads"]
    resources:
        gpu=config["gpus"],
        mem_mb=6000,
        runtime=120,
    log:
        f"{RESULTS}/logs/embed/{{survey}}_shard_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed/{{survey}}_shard_{{shard}}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/embed_shard.py"


rule merge_embeddings:
    input:
        shards=lambda wildcards: shard_files(f"{RESULTS}/{{survey}}/embeddings/shard_{{shard}}.h5", wildcards.survey),
    output:
        merged=f"{RESULTS}/{{survey}}/representation.h5",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        f"{RESULTS}/logs/merge_embeddings/{{survey}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_embeddings/{{survey}}.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/merge_embeddings.py"


rule pca:
    input:
        representation=f"{RESULTS}/{{survey}}/representation.h5",
    output:
        projections=f"{RESULTS}/{{survey}}/pca.h5",
        variance=report(
            f"{RESULTS}/{{survey}}/pca_variance.csv",
            caption="../report/pca_variance.rst",
            category="Representation",
            subcategory="PCA",
            labels={"survey": "{survey}"},
        ),
    params:
        components=PCA_DIMS,
        batch_size=config["pca"]["batch_size"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        f"{RESULTS}/logs/pca/{{survey}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pca/{{survey}}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/pca.py"


rule representation_summary:
    input:
        representations=expand(f"{RESULTS}/{{survey}}/representation.h5", survey=SURVEYS),
        variances=expand(f"{RESULTS}/{{survey}}/pca_variance.csv", survey=SURVEYS),
    output:
        summary=report(
            f"{RESULTS}/representation_summary.csv",
            caption="../report/representation_summary.rst",
            category="Representation",
            subcategory="Summary",
        ),
    params:
        surveys=SURVEYS,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{RESULTS}/logs/representation_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_summary.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/representation_summary.py"


rule training_curves:
    input:
        histories=[f"{RESULTS}/models/{v}/history.csv" for v in VARIANTS if v not in PRETRAINING["weights"]],
    output:
        figure=report(
            f"{RESULTS}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Representation",
            subcategory="Pretraining",
        ),
    params:
        variants=[v for v in VARIANTS if v not in PRETRAINING["weights"]],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        f"{RESULTS}/logs/training_curves.log",
    benchmark:
        f"{RESULTS}/benchmarks/training_curves.tsv"
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/training_curves.py"


rule representation_check:
    input:
        representation=f"{RESULTS}/decals/representation.h5",
        pca=f"{RESULTS}/decals/pca.h5",
        catalogue=catalogue_input("decals"),
        truth=f"{SIM}/decals/hidden/truth.csv",
        rare_features=f"{SIM}/decals/hidden/rare_features.csv",
    output:
        table=report(
            f"{RESULTS}/checks/representation_check.csv",
            caption="../report/representation_check.rst",
            category="Representation",
            subcategory="Check against the hidden truth",
        ),
        details=f"{RESULTS}/checks/representation_check.json",
        figure=report(
            f"{RESULTS}/figures/representation_check.png",
            caption="../report/representation_check.rst",
            category="Representation",
            subcategory="Check against the hidden truth",
        ),
    params:
        check=config["representation_check"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    log:
        f"{RESULTS}/logs/representation_check.log",
    benchmark:
        f"{RESULTS}/benchmarks/representation_check.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/representation_check.py"
