"""EfficientNetB0 that answers Galaxy Zoo decision-tree questions (Walmsley et al. 2022).

Backend-neutral Keras 3: the same code runs on the TensorFlow, JAX and torch backends
(``KERAS_BACKEND``), so a GPU machine without TensorFlow can train and embed.

The network sees one greyscale crop, shape (crop, crop, 1), pixel values 0..255 (the
EfficientNet stem rescales them). Its head is dropout then ``Dense(n_answers)`` with the
activation ``1 + 100 * sigmoid(x)``: positive Dirichlet concentrations, one per answer.
The loss is the Dirichlet-multinomial negative log-likelihood of the volunteers' vote
counts, summed over questions. A question nobody was asked (zero votes) contributes exactly
zero, which is how the decision tree is respected: no masks are needed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np

from .decision_tree import DECALS_DR5, DECALS_QUESTIONS

log = logging.getLogger(__name__)

REPRESENTATION_LAYER = "avg_pool"  # EfficientNetB0's global average pool: 1280-d
REPRESENTATION_DIM = 1280
# The head's bias starts at this logit, so every concentration starts at 1 + 100 sigmoid(-3)
# ~ 5.7 rather than 51: from 51 the first steps' huge loss (~130 per galaxy) drives most
# answers' logits deep into the sigmoid's flat tail, where a concentration pinned at 1 gets
# almost no gradient. Measured on the simulated survey together with the BatchNorm fix in
# pretraining.recompute_batchnorm_statistics (one change, not separated): the
# representation check's k-NN accuracy 0.42 -> 0.61, ring probe ROC AUC 0.65 -> 0.82 (default run).
INITIAL_CONCENTRATION_LOGIT = -3.0


def _keras():
    import keras

    return keras


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a trained network exactly.

    ``crop_size`` in pixels; ``questions`` are DR5 question names the head answers, in
    decision-tree order (all ten for the 'multi' model).
    """

    crop_size: int
    questions: tuple[str, ...] = field(default_factory=lambda: tuple(q.name for q in DECALS_DR5))
    dropout: float = 0.2

    def __post_init__(self):
        unknown = [q for q in self.questions if q not in DECALS_QUESTIONS]
        if unknown:
            raise ValueError(f"unknown decision-tree question(s) {unknown}; known: {list(DECALS_QUESTIONS)}")
        if not self.questions:
            raise ValueError("a model must answer at least one question")
        order = [q.name for q in DECALS_DR5]
        object.__setattr__(self, "questions", tuple(sorted(self.questions, key=order.index)))

    @property
    def answer_columns(self) -> list[str]:
        """Vote-count columns of the catalogue, in head order."""
        return [c for q in self.questions for c in DECALS_QUESTIONS[q].answer_columns()]

    @property
    def question_slices(self) -> list[tuple[str, slice]]:
        """(question, slice into the head's outputs) per question."""
        out, start = [], 0
        for q in self.questions:
            n = len(DECALS_QUESTIONS[q].answers)
            out.append((q, slice(start, start + n)))
            start += n
        return out

    @property
    def n_answers(self) -> int:
        return len(self.answer_columns)


# --- Dirichlet-multinomial ------------------------------------------------------------------

def lgamma(x):
    """log Gamma(x) elementwise on a backend tensor. keras.ops has no lgamma, so each
    backend's own exact implementation is used."""
    keras = _keras()
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.math.lgamma(x)
    if backend == "jax":
        import jax.scipy.special

        return jax.scipy.special.gammaln(x)
    if backend == "torch":
        import torch

        return torch.lgamma(x)
    if backend == "numpy":
        from scipy.special import gammaln

        return gammaln(x)
    raise NotImplementedError(f"lgamma for Keras backend {backend!r}")


def dirichlet_multinomial_log_prob_numpy(counts: np.ndarray, concentrations: np.ndarray) -> np.ndarray:
    """Reference log-likelihood of one question: counts and concentrations (n, k) ->
    (n,). log P = lgG(A) + lgG(N+1) - lgG(N+A) + sum_i [lgG(k_i+a_i) - lgG(a_i) - lgG(k_i+1)]."""
    from scipy.special import gammaln

    counts = np.asarray(counts, np.float64)
    conc = np.asarray(concentrations, np.float64)
    total, alpha = counts.sum(-1), conc.sum(-1)
    return (gammaln(alpha) + gammaln(total + 1) - gammaln(total + alpha)
            + (gammaln(counts + conc) - gammaln(conc) - gammaln(counts + 1)).sum(-1))


def dirichlet_multinomial_nll(counts, concentrations, question_slices):
    """Per-galaxy loss: negative Dirichlet-multinomial log-likelihood summed over
    questions. ``counts`` and ``concentrations`` (n, n_answers) backend tensors; returns (n,).

    With zero votes on a question the terms cancel exactly (lgG(A) - lgG(A)), so questions a
    galaxy's volunteers were never asked add nothing."""
    keras = _keras()
    ops = keras.ops
    counts = ops.cast(counts, "float32")
    conc = ops.cast(concentrations, "float32")
    total_nll = 0.0
    for _, sl in question_slices:
        k, a = counts[:, sl], conc[:, sl]
        n, alpha = ops.sum(k, axis=-1), ops.sum(a, axis=-1)
        log_prob = (lgamma(alpha) + lgamma(n + 1.0) - lgamma(n + alpha)
                    + ops.sum(lgamma(k + a) - lgamma(a) - lgamma(k + 1.0), axis=-1))
        total_nll = total_nll - log_prob
    return total_nll


def _register(cls):
    return _keras().saving.register_keras_serializable(package="morphtools")(cls)


def make_loss(spec: ModelSpec):
    """A Keras loss object for ``spec``'s questions (mean over the batch of the per-galaxy
    summed negative log-likelihood)."""
    _, loss_class = keras_classes()
    return loss_class(tuple(len(DECALS_QUESTIONS[q].answers) for q in spec.questions))


@functools.cache
def keras_classes():
    """(DirichletConcentration, DirichletMultinomialLoss), defined and registered with Keras
    on first call rather than at import, so that importing this module (which the
    catalogue, merging, PCA and plotting steps do, through ``morphtools.embedding`` and
    ``morphtools.pretraining``) does not import Keras and its backend: their environments
    (workflow/envs/) do not have them. Call it before ``keras.saving.load_model`` of a
    file that holds these layers."""
    keras = _keras()

    @_register
    class DirichletConcentration(keras.layers.Layer):
        """x -> 1 + 100 sigmoid(x): concentrations in (1, 101), computed in float32."""

        def __init__(self, **kwargs):
            kwargs.setdefault("dtype", "float32")
            super().__init__(**kwargs)

        def call(self, x):
            return 1.0 + 100.0 * keras.ops.sigmoid(keras.ops.cast(x, "float32"))

    @_register
    class DirichletMultinomialLoss(keras.losses.Loss):
        """Summed Dirichlet-multinomial NLL; ``answers_per_question`` gives the head layout."""

        def __init__(self, answers_per_question=(), name="dirichlet_multinomial", **kwargs):
            super().__init__(name=name, **kwargs)
            self.answers_per_question = tuple(int(a) for a in answers_per_question)
            starts = np.cumsum((0,) + self.answers_per_question)
            self._slices = [(str(i), slice(int(s), int(e))) for i, (s, e) in enumerate(zip(starts[:-1], starts[1:], strict=True))]

        def call(self, y_true, y_pred):
            return dirichlet_multinomial_nll(y_true, y_pred, self._slices)

        def get_config(self):
            return {**super().get_config(), "answers_per_question": list(self.answers_per_question)}

    return DirichletConcentration, DirichletMultinomialLoss


def __getattr__(name):
    """``morphtools.model.DirichletConcentration`` and ``.DirichletMultinomialLoss`` stay
    importable by name; they are defined on first access (:func:`keras_classes`)."""
    classes = ("DirichletConcentration", "DirichletMultinomialLoss")
    if name in classes:
        return keras_classes()[classes.index(name)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(spec: ModelSpec, seed: int | None = None, batchnorm_momentum: float = 0.9):
    """EfficientNetB0 (random init) with the W+22 head. Input (crop, crop, 1) uint8-range
    floats; output (n, n_answers) concentrations. Layer ``avg_pool`` is the 1280-d
    representation.

    ``batchnorm_momentum`` 0.9 instead of Keras' 0.99: with a few thousand galaxies and a
    few hundred steps from random initialisation, the slower moving averages lag the
    weights and the validation loss (which uses them) swings wildly."""
    keras = _keras()
    if seed is not None:
        keras.utils.set_random_seed(seed % 2**32)
    inputs = keras.Input((spec.crop_size, spec.crop_size, 1), name="image")
    base = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_tensor=inputs, pooling="avg",
    )
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = batchnorm_momentum
    representation = base.output
    x = keras.layers.Dropout(spec.dropout, name="head_dropout")(representation)
    x = keras.layers.Dense(
        spec.n_answers, name="answer_logits",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(INITIAL_CONCENTRATION_LOGIT),
    )(x)
    concentration_class, _ = keras_classes()
    concentrations = concentration_class(name="concentrations")(x)
    return keras.Model(inputs, concentrations, name="zoobot_efficientnetb0")


def compile_with_adam(model, learning_rate: float, loss):
    """``model.compile`` with Adam at ``learning_rate``, its moment slots created now for
    the variables trainable at this moment (recompile after changing what is trainable).

    Why now: left to the first training step, the slots are created inside TensorFlow's
    trace of that step, and a ``tf.function`` whose first trace creates variables is
    traced a second time; on a 2-core CPU that second trace of EfficientNetB0's training
    step costs about 15 s per compile. The slots start at zero either way, so training
    is unchanged."""
    keras = _keras()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    model.optimizer.build(model.trainable_variables)
    return model


def compile_model(model, spec: ModelSpec, learning_rate: float = 1e-3):
    """Compile the vote-answering network with Adam and the Dirichlet-multinomial loss."""
    return compile_with_adam(model, learning_rate, make_loss(spec))


def load_trained(weights_path, spec: ModelSpec):
    """Rebuild the architecture from ``spec`` and load ``weights_path`` (a Keras
    ``.weights.h5``); a file that does not fit the architecture is named in the error."""
    model = build_model(spec)
    try:
        model.load_weights(str(weights_path))
    except Exception as err:  # Keras raises several types for a mismatched file
        raise ValueError(
            f"{weights_path}: cannot load into EfficientNetB0 with crop {spec.crop_size} px and "
            f"questions {list(spec.questions)} ({type(err).__name__}: {err})"
        ) from err
    return model


def embedding_model(model):
    """Model with two outputs: the 1280-d representation and the concentrations."""
    keras = _keras()
    return keras.Model(model.input, [model.get_layer(REPRESENTATION_LAYER).output, model.output])


def expected_vote_fractions(concentrations: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Predicted vote fraction per answer: concentration / question total, (n, n_answers)."""
    conc = np.asarray(concentrations, np.float64)
    out = np.empty_like(conc)
    for _, sl in spec.question_slices:
        out[:, sl] = conc[:, sl] / conc[:, sl].sum(axis=1, keepdims=True)
    return out.astype(np.float32)


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """The model's identity: sha256 of its weights file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def accelerator() -> str:
    """'gpu' if the active Keras backend sees a GPU, else 'cpu'."""
    backend = _keras().config.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        if backend == "jax":
            import jax

            return "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
        if backend == "torch":
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
    except Exception:  # a broken driver means we run on the CPU, not that we stop
        return "cpu"
    return "cpu"


def gpu_name() -> str | None:
    """The first GPU's model name as the active Keras backend reports it (e.g. "NVIDIA
    H100 80GB HBM3"), or None without one. GPUs of one kind give the same results and
    two kinds need not, as with CPU generations."""
    backend = _keras().config.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            return details.get("device_name")
        if backend == "jax":
            import jax

            return next(d.device_kind for d in jax.devices() if d.platform == "gpu")
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0)
    except Exception:  # no GPU, or an unreadable name: provenance only, never an error
        return None
    return None


def training_forward(model):
    """A function x -> None that runs ``model`` in training mode on x and leaves every
    BatchNorm layer's moving statistics updated, compiled where the backend allows: a
    ``tf.function`` on TensorFlow, ``jax.jit`` over ``stateless_call`` on JAX (both ~4x
    faster than eager calls for EfficientNetB0 on a CPU); eager calls otherwise (torch).

    The compiled graph bakes in the dropout rates and momenta in force at its first call,
    so it must only be called as :func:`morphtools.pretraining.recompute_batchnorm_statistics`
    does: dropout off, momentum 0. It is cached per model, since tracing EfficientNetB0 takes seconds."""
    keras = _keras()
    cached = getattr(model, "_morphtools_statistics_forward", None)
    if cached is not None:
        return cached
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x: model(x, training=True), reduce_retracing=True)

        def forward(x):
            compiled(x)
    elif backend == "jax":
        import jax

        @jax.jit
        def compiled(trainable, non_trainable, x):
            _, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return non_trainable

        def forward(x):
            updated = compiled([v.value for v in model.trainable_variables],
                               [v.value for v in model.non_trainable_variables], x)
            for variable, value in zip(model.non_trainable_variables, updated, strict=True):
                variable.assign(value)
    else:
        def forward(x):
            model(x, training=True)
    # on the model itself (not a module-level cache), so it is freed with the model
    model._morphtools_statistics_forward = forward
    return forward


def limit_cpu_threads(threads: int) -> None:
    """Let the Keras backend's CPU operations use at most ``threads`` threads (a Snakemake
    job's ``threads``), so that jobs run side by side, or a cluster job given a few of a
    node's cores, do not oversubscribe the cores. Call before the first model is built.
    TensorFlow and torch are limited; JAX reads its thread count from ``XLA_FLAGS`` at
    start-up only, and on a GPU the point is moot."""
    threads = max(1, int(threads))
    backend = _keras().config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError as error:  # TensorFlow already started: too late, not fatal
            log.warning("could not limit TensorFlow to %d threads: %s", threads, error)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


# Instruction-set extensions that change which kernels the backends run, and so the last
# bits of a training step: the same code, seeds and data train measurably different models
# on an AVX2 and an AVX-512 CPU (docs/anomaly.md, "At scale")
_NUMERIC_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")


def _backend_cpu_threads(backend: str) -> int | None:
    """The CPU threads the backend's operations use (the work splits into that many parts,
    which sets the order of a reduction's sums), or None where it cannot say."""
    import os

    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
        if backend == "torch":
            import torch

            return torch.get_num_threads()
    except Exception:  # a provenance note must not stop a training run
        return None
    return None


def machine_description(threads: int | None = None, cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """One line naming the machine a model was trained or run on: CPU model, the
    instruction-set extensions of :data:`_NUMERIC_CPU_FLAGS` it has, thread count, Keras
    backend and its version, and the accelerator ('cpu', or 'gpu' with the GPU's name where
    the backend reports it, e.g. 'gpu (NVIDIA H200)'). Training and embedding
    repeat to the digit on one such machine, not across them, so a model's history records
    it per epoch and a representation file per shard."""
    import platform

    fields: dict[str, str] = {}
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())  # the first processor's
    except OSError:  # not Linux: the platform's own name is all there is
        pass
    # a virtual machine's model name can be as bare as "AMD EPYC": family and model tell
    # the generations apart
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        cpu += f" family {fields['cpu family']} model {fields['model']}"
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    keras = _keras()
    backend = keras.config.backend()
    try:
        version = getattr(__import__(backend), "__version__", "?")  # Keras backends are named as their packages
    except ImportError:
        version = "?"
    extensions = " ".join(f for f in _NUMERIC_CPU_FLAGS if f in flags) or "none listed"
    threads = threads or _backend_cpu_threads(backend)
    threads_text = f"; {threads} threads" if threads else ""
    device = accelerator()
    gpu = gpu_name() if device == "gpu" else None
    device_text = f"{device} ({gpu})" if gpu else device
    return (f"{cpu} ({platform.machine()}; {extensions}{threads_text}); keras {keras.__version__} "
            f"{backend} {version}; {device_text}")


def use_mixed_precision_if_gpu() -> str:
    """Switch Keras to mixed float16 on a GPU (the head's concentrations stay float32).
    Returns the device kind. Call before building a model."""
    device = accelerator()
    if device == "gpu":
        _keras().mixed_precision.set_dtype_policy("mixed_float16")
    return device
