import functools
import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.logging import logger
from snakemake.utils import validate

# the science package, importable without installing it (e.g. under --sdm conda)
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))
from morphtools.catalogue import table_columns  # noqa: E402
from morphtools.decision_tree import DECALS_DR5, DECALS_QUESTIONS  # noqa: E402
from morphtools.sharding import shard_digest  # noqa: E402
from morphtools.simulation.version import RENDER_VERSION  # noqa: E402


validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results"]
RESOURCES = config["resources"]
SIM = f"{RESOURCES}/simulated"
SHARDS = list(range(config["shards"]))
SURVEYS = ["decals", "gz2"]

# where the data come from (survey.source / images / gz2): see the schema's descriptions
SOURCE = config["survey"]["source"]
IMAGES = config["survey"]["images"]
GZ2_SOURCE = config["survey"]["gz2"]
PUBLIC = f"{RESOURCES}/public"
KAGGLE = f"{RESOURCES}/gz2_kaggle"
IMAGE_FORMAT = {"decals": "png" if IMAGES == "gz_decals_png" else "fits", "gz2": "jpeg"}
# the simulated surveys' hidden truth is what the sample figure and the representation check read
HAS_TRUTH = {"decals": SOURCE == "simulated", "gz2": GZ2_SOURCE == "simulated"}
LEGACY_SURVEY = config["cutouts"]["legacy_survey"]
# a cache per (layer, bands): cutouts of one data release never answer for another
CUTOUT_CACHE = (f"{RESOURCES}/cutouts/decals" if IMAGES == "simulated"
                else f"{RESOURCES}/cutouts/{LEGACY_SURVEY['layer']}_{config['cutouts']['bands']}")


PRETRAINING = config["pretraining"]
VARIANTS = list(PRETRAINING["variants"])
# the settings every model's training shares, as the pretrain rule's params: the variants
# and weights maps name other models too, so adding a variant must not retrain the others
# (and initial_weights, per variant, is the rule's input: a change retrains that variant only)
TRAINING_SETTINGS = {k: v for k, v in PRETRAINING.items() if k not in ("variants", "weights", "initial_weights")}
EMBEDDING_MODEL = config["embedding"]["model"]
PCA_DIMS = sorted(config["pca"]["components"])
SIMILARITY = config["similarity"]
MAPS = config["representation_maps"]


def _check_model_config():
    """Fail at parse time, naming the setting, rather than hours into a run."""
    if EMBEDDING_MODEL not in PRETRAINING["variants"] and EMBEDDING_MODEL not in PRETRAINING["weights"]:
        raise ValueError(f"embedding.model {EMBEDDING_MODEL!r} is neither a pretraining variant {VARIANTS} "
                         f"nor a configured weights file")
    for name, path in PRETRAINING["weights"].items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretraining.weights.{name}: weights file {path!r} does not exist")
    for name, path in PRETRAINING["initial_weights"].items():
        if name not in VARIANTS or name in PRETRAINING["weights"]:
            raise ValueError(f"pretraining.initial_weights.{name}: not a variant that is pretrained here "
                             f"(variants {VARIANTS}, fixed weights {sorted(PRETRAINING['weights'])})")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretraining.initial_weights.{name}: weights file {path!r} does not exist")
        own_output = f"{RESULTS}/models/{name}/model.weights.h5"
        if os.path.realpath(path) == os.path.realpath(own_output):
            raise ValueError(f"pretraining.initial_weights.{name}: {path!r} is the file this pretraining writes; "
                             f"copy it elsewhere first (e.g. {RESULTS}/models/{name}/start.weights.h5)")
    if max(PCA_DIMS) > 1280:
        raise ValueError(f"pca.components {PCA_DIMS}: at most 1280 (the representation's size)")
    pre = config["preprocessing"]
    if not pre["crop_to"] <= pre["resize_to"] <= pre["image_size"]:
        raise ValueError(f"preprocessing: need crop_to <= resize_to <= image_size, got {pre['crop_to']}, "
                         f"{pre['resize_to']}, {pre['image_size']}")


_check_model_config()


def _check_similarity_config():
    """The spaces searched and mapped must be stored; map filters must name answers the
    embedding model predicts."""
    stored = [f"pca_{d}" for d in PCA_DIMS] + ["representation"]
    for key, space in (("similarity.space", SIMILARITY["space"]), ("representation_maps.space", MAPS["space"])):
        if space not in stored:
            raise ValueError(f"{key} {space!r}: not a stored space; choose one of {stored} (pca.components)")
    answers = {c for q in variant_questions(EMBEDDING_MODEL) for c in DECALS_QUESTIONS[q].answer_columns("_fraction")}
    for subset, thresholds in MAPS["subsets"].items():
        for name in thresholds:
            if name not in answers:
                raise ValueError(f"representation_maps.subsets.{subset}: {name!r} is not a fraction that model "
                                 f"{EMBEDDING_MODEL!r} predicts")


def _check_survey_config():
    """Combinations the schema cannot express, named by their keys."""
    survey = config["survey"]
    if IMAGES == "simulated" and SOURCE != "simulated":
        raise ValueError(f"survey.images: simulated renders only the simulated survey's galaxies; with survey.source "
                         f"{SOURCE!r} use legacy_survey or gz_decals_png")
    if IMAGES == "gz_decals_png" and not survey["public"]["png_zips"]:
        raise ValueError("survey.images: gz_decals_png needs the zips' names in survey.public.png_zips")
    if SOURCE == "catalogue":
        path = survey["catalogue"]["path"]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"survey.catalogue.path: catalogue file {path!r} does not exist")
        # a catalogue of one's own usually has no GZ DECaLS votes, so nothing to pretrain on
        columns = set(table_columns(path))
        for variant in VARIANTS:
            if variant in PRETRAINING["weights"]:
                continue
            needed = [c for q in DECALS_DR5 if q.name in variant_questions(variant) for c in q.answer_columns()]
            absent = [c for c in needed if c not in columns]
            if absent:
                raise ValueError(
                    f"pretraining.variants.{variant}: {path} has no vote-count columns to pretrain on (e.g. "
                    f"{absent[0]!r}); give a trained model in pretraining.weights.{variant}, or add the votes")


wildcard_constraints:
    shard=r"\d+",
    survey="|".join(SURVEYS),
    variant="|".join(sorted(set(VARIANTS) | set(PRETRAINING["weights"]))),
    subset="|".join(MAPS["subsets"]),


def catalogue_checkpoint(survey):
    return {"decals": checkpoints.decals_catalogue, "gz2": checkpoints.gz2_catalogue}[survey]


def catalogue_input(survey):
    """The survey's catalogue as an input whose timestamp is ignored: a shard reruns when
    its own rows change (``shard_rows_digest``), not whenever any galaxy changes."""

    def catalogue(wildcards):
        return ancient(catalogue_checkpoint(survey).get().output.catalogue)

    return catalogue


@functools.lru_cache(maxsize=8)
def _shard_digests(path, mtime):
    cat = pd.read_csv(path, dtype={"galaxy_id": str})
    return {int(s): shard_digest(rows, "galaxy_id") for s, rows in cat.groupby("shard")}


def shard_rows_digest(survey):
    def digest(wildcards):
        path = catalogue_checkpoint(survey).get().output.catalogue
        return _shard_digests(path, os.path.getmtime(path)).get(int(wildcards.shard), "empty-shard")

    return digest


def catalogue_digest(survey):
    """Changes when any row of the survey's catalogue changes (for jobs that use them all)."""

    def digest(wildcards):
        path = catalogue_checkpoint(survey).get().output.catalogue
        digests = _shard_digests(path, os.path.getmtime(path))
        return shard_digest(pd.DataFrame({"d": [digests[k] for k in sorted(digests)]}), "d")

    return digest


def variant_questions(variant):
    """The DR5 questions a pretraining variant answers, in decision-tree order."""
    questions = PRETRAINING["variants"].get(variant, "all")
    return [q.name for q in DECALS_DR5] if questions == "all" else list(questions)


_check_similarity_config()


def model_weights(variant):
    """A configured weights file, or the one pretraining writes."""
    return PRETRAINING["weights"].get(variant) or f"{RESULTS}/models/{variant}/model.weights.h5"


def space_file(survey, space):
    """The file holding a stored space: the PCA projections, or the full representation."""
    return f"{RESULTS}/{survey}/representation.h5" if space == "representation" else f"{RESULTS}/{survey}/pca.h5"


def shard_files(pattern, survey):
    return expand(pattern, survey=survey, shard=SHARDS)


def all_outputs():
    out = []
    for survey in SURVEYS:
        out += shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", survey)
        out.append(f"{RESULTS}/{survey}/qa_summary.csv")
    if all(HAS_TRUTH.values()):  # the figure shows each hidden class
        out.append(f"{RESULTS}/figures/sample_galaxies.png")
    for survey in SURVEYS:
        out += [f"{RESULTS}/{survey}/pca.h5", f"{RESULTS}/{survey}/pca_variance.csv"]
    out += [f"{RESULTS}/representation_summary.csv"]
    if any(v not in PRETRAINING["weights"] for v in VARIANTS):
        out.append(f"{RESULTS}/figures/training_curves.png")
    if HAS_TRUTH["decals"]:
        out += [f"{RESULTS}/checks/representation_check.csv", f"{RESULTS}/figures/representation_check.png"]
        # the forum tags come with the survey's tables (GZ Talk for real data)
        out += [f"{RESULTS}/similarity/tag_precision.csv", f"{RESULTS}/figures/similarity_tags.png"]
    out += expand(f"{RESULTS}/figures/umap_{{subset}}.png", subset=list(MAPS["subsets"]))
    out += anomaly_outputs()
    out += finetune_outputs()
    return out


_check_survey_config()


# -- inputs that depend on the data source -----------------------------------------------------------------------


def zenodo_file(name):
    return f"{PUBLIC}/zenodo/{name}"


def decals_catalogue_inputs():
    """The files the DECaLS catalogue is built from, by survey.source."""
    if SOURCE == "simulated":
        return {"nsa": f"{SIM}/decals/nsa_v1_0_1.fits", "volunteers": f"{SIM}/decals/gz_decals_volunteers.csv"}
    if SOURCE == "public":
        public = config["survey"]["public"]
        inputs = {"nsa": f"{PUBLIC}/nsa_v1_0_1.fits", "volunteers": zenodo_file(public["volunteers"])}
        if public["automated"]:
            inputs["automated"] = zenodo_file(public["automated"])
        return inputs
    return {"table": config["survey"]["catalogue"]["path"]}


def zenodo_files():
    """Files the run needs from the GZ DECaLS Zenodo record."""
    public = config["survey"].get("public") or {}
    names = []
    if SOURCE == "public":
        names += [public["volunteers"]] + ([public["automated"]] if public["automated"] else [])
    if IMAGES == "gz_decals_png":
        names += list(public["png_zips"])
    return names


# ---- anomaly experiments (paper sec. 3) -------------------------------------------------

ANOMALY = config["anomaly"]
ANOMALY_REPEATS = list(range(ANOMALY["repeats"]))


def labels_table_path(table):
    """A configured labels table's path ({resources} and {results} filled in), or None for
    "catalogue" (the votes are catalogue columns)."""
    return None if table == "catalogue" else table.format(resources=RESOURCES, results=RESULTS)


def labels_left_out(table, survey):
    """Why a labels table cannot label this configuration's galaxies, or None when it can.

    A labels table under the simulated survey's hidden truth holds votes for the simulated
    galaxies only: with real galaxies (survey.source / survey.gz2 not simulated) joining it
    would give every galaxy no votes, or another galaxy's votes. Real rare-feature votes are
    not public (GZ DECaLS released no ring / irregular columns); give them as labels_table.
    """
    path = labels_table_path(table)
    if path and path.startswith(f"{SIM}/") and not HAS_TRUTH[survey]:
        return (f"its labels_table {table!r} is the simulated survey's hidden truth, but the {survey} "
                f"galaxies are not simulated here; give a table of these galaxies' votes as labels_table")
    return None


def check_user_labels_table(table, setting, what):
    """A labels table the user gives (not a workflow output) must exist: checked at parse
    time, as the plan cannot see it before the catalogue checkpoint has run."""
    path = labels_table_path(table)
    if path and not path.startswith((f"{SIM}/", f"{RESULTS}/")) and not Path(path).exists():
        raise ValueError(f"{setting}: {path} does not exist (the votes that define {what}; see the README, "
                         f"'Real data')")


EXPERIMENTS_LEFT_OUT = {n: why for n, exp in ANOMALY["experiments"].items()
                        if (why := labels_left_out(exp.get("labels_table", "catalogue"), exp["survey"])) is not None}
EXPERIMENTS = {n: exp for n, exp in ANOMALY["experiments"].items() if n not in EXPERIMENTS_LEFT_OUT}
for _name, _why in EXPERIMENTS_LEFT_OUT.items():
    logger.warning(f"anomaly experiment {_name!r} left out: {_why}")


def experiment_labels_table(name):
    """The table holding an experiment's vote fractions, when it is not the catalogue."""
    return labels_table_path(EXPERIMENTS[name].get("labels_table", "catalogue"))


def _check_anomaly_config():
    for name, exp in EXPERIMENTS.items():
        if exp.get("threshold") is None and "prevalence" not in exp:
            raise ValueError(f"anomaly.experiments.{name}: give a threshold or a prevalence")
    if not EXPERIMENTS:
        raise ValueError(f"anomaly.experiments: none can run here ({EXPERIMENTS_LEFT_OUT})")
    for name, exp in EXPERIMENTS.items():
        check_user_labels_table(exp.get("labels_table", "catalogue"), f"anomaly.experiments.{name}.labels_table",
                                f"the {name} anomalies")
    if ANOMALY["figures"]["map_experiment"] not in EXPERIMENTS:
        raise ValueError(f"anomaly.figures.map_experiment {ANOMALY['figures']['map_experiment']!r} is not an "
                         f"experiment that runs here {sorted(EXPERIMENTS)}"
                         + (f"; left out: {EXPERIMENTS_LEFT_OUT}" if EXPERIMENTS_LEFT_OUT else ""))
    if ANOMALY["first_batch"] > ANOMALY["ratings"]:
        raise ValueError(f"anomaly.first_batch {ANOMALY['first_batch']} > anomaly.ratings {ANOMALY['ratings']}")
    if ANOMALY["pca_components"] not in PCA_DIMS:
        raise ValueError(f"anomaly.pca_components {ANOMALY['pca_components']} is not among pca.components {PCA_DIMS}")


_check_anomaly_config()


def anomaly_run_keys():
    """(experiment, method, repeat) of every anomaly run."""
    return [(n, m, r) for n, exp in EXPERIMENTS.items() for m in exp["methods"] for r in ANOMALY_REPEATS]


def anomaly_runs(suffix=".csv"):
    """Every {experiment}/runs/{method}/repeat_{repeat}.csv (or the .json beside it), in
    anomaly_run_keys() order."""
    return [f"{RESULTS}/anomaly/{n}/runs/{m}/repeat_{r}{suffix}" for n, m, r in anomaly_run_keys()]


def _experiment_survey(wildcards):
    return EXPERIMENTS[wildcards.experiment]["survey"]


def _experiment_inputs(wildcards):
    survey = _experiment_survey(wildcards)
    inputs = {
        "catalogue": catalogue_input(survey)(wildcards),
        "representation": f"{RESULTS}/{survey}/representation.h5",
        "pca": f"{RESULTS}/{survey}/pca.h5",
        "ellipse": shard_files(f"{RESULTS}/{{survey}}/ellipse/shard_{{shard}}.csv", survey),
    }
    labels = experiment_labels_table(wildcards.experiment)
    if labels:
        inputs["labels"] = labels
    return inputs


def anomaly_surveys():
    return sorted({exp["survey"] for exp in EXPERIMENTS.values()})


def anomaly_outputs():
    out = [f"{RESULTS}/anomaly/table1.csv", f"{RESULTS}/anomaly/metrics.csv",
           f"{RESULTS}/figures/anomaly_map.png", f"{RESULTS}/figures/anomaly_top.png"]
    out += [f"{RESULTS}/figures/anomaly_curves_{s}.png" for s in anomaly_surveys()]
    return out


# ---- fine-tuning for rings (paper sec. 4) ---------------------------------------------------

FINETUNE = config["finetune"]
FINETUNE_INITIALISATIONS_BUILT_IN = ("imagenet", "scratch")


def _finetune_left_out():
    """Why the whole sweep cannot run here (None when it can), and initialisations left out
    with the reason."""
    why = labels_left_out(FINETUNE["labels_table"], "decals")
    inits = {i for grid in FINETUNE["grids"] for i in grid["initialisations"]}
    left_out = {}
    if "imagenet" in inits and not FINETUNE["imagenet_weights"]:
        left_out["imagenet"] = ("no ImageNet weights file is configured (finetune.imagenet_weights: Keras' "
                                "efficientnetb0_notop.h5, which cannot be downloaded here)")
    return why, left_out


FINETUNE_LEFT_OUT, FINETUNE_INITS_LEFT_OUT = _finetune_left_out()
if FINETUNE_LEFT_OUT:
    logger.warning(f"fine-tuning sweep left out: {FINETUNE_LEFT_OUT}")
for _init, _why in FINETUNE_INITS_LEFT_OUT.items():
    logger.warning(f"fine-tuning initialisation {_init!r} left out: {_why}")


def _check_finetune_config():
    inits = {i for grid in FINETUNE["grids"] for i in grid["initialisations"]}
    unknown = sorted(inits - set(VARIANTS) - set(FINETUNE_INITIALISATIONS_BUILT_IN))
    if unknown:
        raise ValueError(f"finetune.grids: initialisation(s) {unknown} are neither imagenet, scratch nor a "
                         f"pretraining variant {VARIANTS}")
    if FINETUNE["figures"]["finetuned_depth"] == "frozen":
        raise ValueError("finetune.figures.finetuned_depth: choose an unfrozen depth, not 'frozen'")
    if FINETUNE_LEFT_OUT:
        return
    check_user_labels_table(FINETUNE["labels_table"], "finetune.labels_table", "the rings")
    weights = FINETUNE["imagenet_weights"]
    if "imagenet" in inits and weights and not Path(weights).exists():
        raise ValueError(f"finetune.imagenet_weights: {weights} does not exist (Keras' EfficientNetB0 ImageNet "
                         f"weights without the top, efficientnetb0_notop.h5; see the README, 'Fine-tuning')")


_check_finetune_config()


def finetune_run_keys():
    """(initialisation, depth, train size, repeat) of every fine-tuning job, grids merged."""
    keys = {}
    for grid in FINETUNE["grids"]:
        for init in grid["initialisations"]:
            if init in FINETUNE_INITS_LEFT_OUT:
                continue
            for depth in grid["depths"]:
                for size in grid["train_sizes"]:
                    for repeat in range(grid["repeats"]):
                        keys[(init, depth, int(size), repeat)] = None
    return list(keys)


def finetune_runs():
    return [f"{RESULTS}/finetune/runs/{i}/{d}/n{n}/repeat_{r}.json" for i, d, n, r in finetune_run_keys()]


def finetune_init_weights(init):
    """The file an initialisation's weights come from (none for scratch)."""
    if init == "scratch":
        return []
    if init == "imagenet":
        return [FINETUNE["imagenet_weights"]]
    return [model_weights(init)]


def finetune_run_inputs(wildcards):
    """A fine-tuning job's inputs: the cached representations always; the crops and the
    initialisation's weights only when the base is unfrozen (it then trains on images)."""
    inputs = {"rings": f"{RESULTS}/finetune/rings.csv", "features": f"{RESULTS}/finetune/features/{wildcards.init}.h5"}
    if wildcards.depth != "frozen":
        inputs["crops"] = shard_files(f"{RESULTS}/{{survey}}/crops/shard_{{shard}}.h5", "decals")
        inputs["weights"] = finetune_init_weights(wildcards.init)
    return inputs


def finetune_outputs():
    if FINETUNE_LEFT_OUT or not finetune_run_keys():
        return []
    return [f"{RESULTS}/finetune/results.csv", f"{RESULTS}/finetune/summary.csv",
            f"{RESULTS}/figures/finetune_by_pretraining.png", f"{RESULTS}/figures/finetune_single_question.png",
            f"{RESULTS}/figures/finetune_by_depth.png"]
