# The public sources, downloaded once into resources/public/ and checked: the NSA table
# (size and, when configured, MD5) and the GZ DECaLS files from Zenodo (the size and MD5
# the record publishes). A broken transfer resumes where it stopped on the next try or run.


if SOURCE == "public":

    rule download_nsa:
        output:
            nsa=f"{PUBLIC}/nsa_v1_0_1.fits",
        params:
            url=config["survey"]["public"]["nsa_url"],
            md5=config["survey"]["public"]["nsa_md5"],
            retry=config["downloads"],
        threads: 1
        resources:
            mem_mb=2000,
            runtime=600,
            downloads=1,
        log:
            f"{RESULTS}/logs/download/nsa.log",
        benchmark:
            f"{RESULTS}/benchmarks/download/nsa.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/download.py"


if zenodo_files():

    rule download_zenodo_file:
        output:
            file=zenodo_file("{filename}"),
        wildcard_constraints:
            filename="|".join(re.escape(name) for name in zenodo_files()),
        params:
            zenodo_api=config["survey"]["public"]["zenodo_api"],
            zenodo_record=str(config["survey"]["public"]["zenodo_record"]),
            retry=config["downloads"],
        threads: 1
        resources:
            mem_mb=2000,
            runtime=240,
            downloads=1,
        log:
            f"{RESULTS}/logs/download/{{filename}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/download/{{filename}}.tsv"
        conda:
            "../envs/survey.yaml"
        script:
            "../scripts/download.py"
