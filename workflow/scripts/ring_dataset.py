"""Adapter: the labelled rings (candidates cut on the model's predicted vote fractions)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import json  # noqa: E402

import pandas as pd  # noqa: E402

from morphtools.embedding import read_embeddings  # noqa: E402
from morphtools.finetune import RingCuts, SplitRules, max_train_size, ring_dataset  # noqa: E402
from morphtools.labels import labels_by_galaxy  # noqa: E402
from morphtools.scripting import log_to  # noqa: E402
from morphtools.storage import atomic_path, write_csv  # noqa: E402

log = log_to(snakemake.log[0], "ring_dataset")
emb = read_embeddings(snakemake.input.representation, ("galaxy_id", "predicted_fractions"))
predicted = pd.DataFrame(emb["predicted_fractions"], columns=[str(a) for a in emb["attrs"]["answers"]])
predicted.insert(0, "galaxy_id", [str(g) for g in emb["galaxy_id"]])
catalogue = pd.read_csv(snakemake.input.catalogue, dtype={"galaxy_id": str}, low_memory=False)
labels = pd.read_csv(snakemake.input.labels) if snakemake.input.labels else None
columns = [c for c in (snakemake.params.fraction, snakemake.params.votes) if c]
votes = labels_by_galaxy(catalogue, labels, snakemake.params.join_on, columns)
cuts = RingCuts(**snakemake.params.cuts)
rings, summary = ring_dataset(predicted, votes, snakemake.params.fraction, cuts, snakemake.params.votes)
summary["cuts"] = snakemake.params.cuts
summary["max_train_size"] = max_train_size(summary["rings"], SplitRules(**snakemake.params.split))
write_csv(rings, snakemake.output.rings)
with atomic_path(snakemake.output.summary) as tmp:
    Path(tmp).write_text(json.dumps(summary, indent=1))
log.info("%s", summary)
