# The embedded default data source: a simulated survey in the real formats.


rule simulate_decals_survey:
    output:
        nsa=f"{SIM}/decals/nsa_v1_0_1.fits",
        volunteers=f"{SIM}/decals/gz_decals_volunteers.csv",
        tags=f"{SIM}/decals/talk_tags.csv",
        rare_features=f"{SIM}/decals/hidden/rare_features.csv",
        truth=f"{SIM}/decals/hidden/truth.csv",
    params:
        n_galaxies=config["survey"]["simulated"]["decals_galaxies"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{RESULTS}/logs/simulate_decals_survey.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate_decals_survey.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/simulate_decals_survey.py"


rule simulate_gz2_tables:
    output:
        solutions=f"{SIM}/gz2/training_solutions_rev1.csv",
        truth=f"{SIM}/gz2/hidden/truth.csv",
    params:
        n_galaxies=config["survey"]["simulated"]["gz2_galaxies"],
        selection=config["survey"]["simulated"]["gz2_selection"],
        seed=config["seed"] + 1,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        f"{RESULTS}/logs/simulate_gz2_tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate_gz2_tables.tsv"
    conda:
        "../envs/survey.yaml"
    script:
        "../scripts/simulate_gz2_tables.py"
