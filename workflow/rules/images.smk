# Per shard: fetch images (cutouts from the sky or the Legacy Survey, GZ DECaLS PNGs, JPEGs
# from the GZ2 archive), then crops for the CNN. Never per galaxy: a shard is the unit of
# work and of rebuild. Images are cached under resources/ and never fetched twice; a cached
# image is kept only while it answers the request (and, simulated, while its rendering
# digest matches: see morphtools.simulation.version).


if IMAGES in ("simulated", "legacy_survey"):

    rule decals_cutouts:
        input:
            catalogue=catalogue_input("decals"),
            # the simulated sky renders from the hidden truth; the real service needs nothing local
            **({"sky": f"{SIM}/decals/hidden/truth.csv"} if IMAGES == "simulated" else {}),
        output:
            manifest=f"{RESULTS}/decals/images/shard_{{shard}}.csv",
        params:
            rows_digest=shard_rows_digest("decals"),
            images=IMAGES,
            # a new rendering version reruns the rule, which renders again what it changed
            **({"render_version": RENDER_VERSION} if IMAGES == "simulated" else {}),
            cache_dir=CUTOUT_CACHE,
            cutouts=config["cutouts"],
            retry=config["downloads"],
        threads: 1
        resources:
            mem_mb=2000,
            runtime=240,
            # the requests this job has open at once; cap them over all jobs with
            # --resources legacy_survey_connections=N
            legacy_survey_connections=LEGACY_SURVEY["concurrency"] if IMAGES == "legacy_survey" else 0,
        log:
            f"{RESULTS}/logs/decals_cutouts/shard_{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/decals_cutouts/shard_{{shard}}.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/fetch_cutouts.py"


if IMAGES == "gz_decals_png":

    rule gz_decals_png_index:
        input:
            zips=[zenodo_file(name) for name in config["survey"]["public"]["png_zips"]],
        output:
            index=f"{PUBLIC}/gz_decals_png_index.csv",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        log:
            f"{RESULTS}/logs/gz_decals_png_index.log",
        benchmark:
            f"{RESULTS}/benchmarks/gz_decals_png_index.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/index_gz_decals_pngs.py"

    rule decals_pngs:
        input:
            catalogue=catalogue_input("decals"),
            index=f"{PUBLIC}/gz_decals_png_index.csv",
        output:
            manifest=f"{RESULTS}/decals/images/shard_{{shard}}.csv",
        params:
            rows_digest=shard_rows_digest("decals"),
            image_dir=f"{RESOURCES}/gz_decals_png",
            missing_reason="no image in the GZ DECaLS PNG zips",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        log:
            f"{RESULTS}/logs/decals_pngs/shard_{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/decals_pngs/shard_{{shard}}.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/extract_shard_images.py"


if GZ2_SOURCE == "simulated":

    rule gz2_images:
        input:
            catalogue=catalogue_input("gz2"),
            sky=f"{SIM}/gz2/hidden/truth.csv",
        output:
            manifest=f"{RESULTS}/gz2/images/shard_{{shard}}.csv",
        params:
            rows_digest=shard_rows_digest("gz2"),
            image_dir=f"{SIM}/gz2/images_training_rev1",
            render_version=RENDER_VERSION,
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

else:

    rule gz2_kaggle_unpack:
        input:
            archive=config["survey"]["kaggle"]["archive"],
        output:
            solutions=f"{KAGGLE}/training_solutions_rev1.csv",
            index=f"{KAGGLE}/image_index.csv",
        params:
            work_dir=KAGGLE,
            expected_galaxies=config["survey"]["kaggle"]["expected_galaxies"],
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        log:
            f"{RESULTS}/logs/gz2_kaggle_unpack.log",
        benchmark:
            f"{RESULTS}/benchmarks/gz2_kaggle_unpack.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/unpack_kaggle_gz2.py"

    rule gz2_images:
        input:
            catalogue=catalogue_input("gz2"),
            index=f"{KAGGLE}/image_index.csv",
        output:
            manifest=f"{RESULTS}/gz2/images/shard_{{shard}}.csv",
        params:
            rows_digest=shard_rows_digest("gz2"),
            image_dir=f"{KAGGLE}/images_training_rev1",
            missing_reason="no images_training_rev1/<GalaxyID>.jpg in the Kaggle archive",
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
            "../scripts/extract_shard_images.py"


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
