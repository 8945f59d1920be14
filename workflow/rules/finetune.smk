# Fine-tuning for rings (paper sec. 4): the labelled rings from the pretrained model's
# predicted fractions, each initialisation's representations of them (cached for the
# frozen-base stage), one job per {initialisation} x {depth} x {train size} x {repeat},
# then the table and Figs 7-9. A killed job keeps its checkpoints and resumes; a finished
# one removes them.


wildcard_constraints:
    init="|".join(list(VARIANTS) + list(FINETUNE_INITIALISATIONS_BUILT_IN)),
    depth="frozen|top|block7|block6|block5|block4|all",
    size=r"\d+",


rule ring_dataset:
    input:
        representation=f"{RESULTS}/decals/representation.h5",
        catalogue=catalogue_input("decals"),
        labels=labels_table_path(FINETUNE["labels_table"]) or [],
    output:
        rings=f"{RESULTS}/finetune/rings.csv",
        summary=f"{RESULTS}/finetune/rings_summary.json",
    params:
        fraction=FINETUNE["fraction"],
        votes=FINETUNE["votes"],
        join_on=FINETUNE["join_on"],
        cuts=FINETUNE["cuts"],
        split=FINETUNE["split"],
        catalogue_digest=catalogue_digest("decals"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{RESULTS}/logs/finetune/ring_dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/ring_dataset.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/ring_dataset.py"


rule finetune_features:
    input:
        rings=f"{RESULTS}/finetune/rings.csv",
        crops=shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals"),
        weights=lambda wildcards: finetune_init_weights(wildcards.init),
    output:
        features=f"{RESULTS}/finetune/features/{{init}}.h5",
    params:
        questions=lambda wildcards: variant_questions(wildcards.init) if wildcards.init in VARIANTS else None,
        crop_to=config["preprocessing"]["crop_to"],
        batch_size=config["embedding"]["batch_size"],
        seed=config["seed"],
    threads: 8  # capped at --cores by Snakemake; the framework uses what it is given
    resources:
        gpu=config["gpus"],
        mem_mb=6000,
        runtime=60,
    log:
        f"{RESULTS}/logs/finetune/features_{{init}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/features_{{init}}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/finetune_features.py"


rule finetune_run:
    input:
        unpack(finetune_run_inputs),
    output:
        result=f"{RESULTS}/finetune/runs/{{init}}/{{depth}}/n{{size}}/repeat_{{repeat}}.json",
        split=f"{RESULTS}/finetune/runs/{{init}}/{{depth}}/n{{size}}/repeat_{{repeat}}_split.csv",
        history=f"{RESULTS}/finetune/runs/{{init}}/{{depth}}/n{{size}}/repeat_{{repeat}}_history.csv",
    params:
        questions=lambda wildcards: variant_questions(wildcards.init) if wildcards.init in VARIANTS else None,
        training=FINETUNE["training"],
        split=FINETUNE["split"],
        crop_to=config["preprocessing"]["crop_to"],
        seed=config["seed"],
        # kept when the job fails or is killed, so a rerun resumes; removed when it finishes
        checkpoint_dir=f"{RESULTS}/finetune/checkpoints/{{init}}/{{depth}}/n{{size}}/repeat_{{repeat}}",
    # the frozen-base head trains on cached representations in seconds: one thread, so such
    # jobs run side by side; through the base, every core (capped at --cores)
    threads: lambda wildcards: 1 if wildcards.depth == "frozen" else 8
    resources:
        gpu=config["gpus"],
        mem_mb=6000,
        runtime=6 * 60,
    log:
        f"{RESULTS}/logs/finetune/runs/{{init}}_{{depth}}_n{{size}}_repeat_{{repeat}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/runs/{{init}}_{{depth}}_n{{size}}_repeat_{{repeat}}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/finetune_run.py"


rule finetune_results:
    input:
        runs=finetune_runs(),
        rings_summary=f"{RESULTS}/finetune/rings_summary.json",
    output:
        results=report(
            f"{RESULTS}/finetune/results.csv",
            caption="../report/finetune_results.rst",
            category="Fine-tuning",
            subcategory="Every model",
        ),
        summary=report(
            f"{RESULTS}/finetune/summary.csv",
            caption="../report/finetune_summary.rst",
            category="Fine-tuning",
            subcategory="Table",
        ),
        margins=report(
            f"{RESULTS}/finetune/margins.csv",
            caption="../report/finetune_margins.rst",
            category="Fine-tuning",
            subcategory="Margins of multi",
        ),
    params:
        left_out=FINETUNE_INITS_LEFT_OUT,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{RESULTS}/logs/finetune/results.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/results.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/finetune_results.py"


rule finetune_figures:
    input:
        results=f"{RESULTS}/finetune/results.csv",
    output:
        by_pretraining=report(
            f"{RESULTS}/figures/finetune_by_pretraining.png",
            caption="../report/finetune_by_pretraining.rst",
            category="Fine-tuning",
            subcategory="Accuracy by pretraining (Fig. 7)",
        ),
        single_question=report(
            f"{RESULTS}/figures/finetune_single_question.png",
            caption="../report/finetune_single_question.rst",
            category="Fine-tuning",
            subcategory="Multi vs single question (Fig. 8)",
        ),
        by_depth=report(
            f"{RESULTS}/figures/finetune_by_depth.png",
            caption="../report/finetune_by_depth.rst",
            category="Fine-tuning",
            subcategory="Accuracy by unfrozen depth (Fig. 9)",
        ),
    params:
        finetuned_depth=FINETUNE["figures"]["finetuned_depth"],
        depth_train_size=FINETUNE["figures"]["depth_train_size"],
        left_out=FINETUNE_INITS_LEFT_OUT,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{RESULTS}/logs/finetune/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/figures.tsv"
    conda:
        "../envs/plots.yaml"
    script:
        "../scripts/finetune_figures.py"
