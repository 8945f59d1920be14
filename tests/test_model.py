import math

import numpy as np
import pytest

from morphtools.decision_tree import DECALS_DR5
from morphtools.model import (
    REPRESENTATION_DIM,
    ModelSpec,
    build_model,
    compile_with_adam,
    dirichlet_multinomial_log_prob_numpy,
    dirichlet_multinomial_nll,
    embedding_model,
    expected_vote_fractions,
    file_sha256,
    load_trained,
    machine_description,
    make_loss,
)


def test_loss_matches_a_hand_computation():
    # one two-answer question, votes (3, 1), concentrations (2, 1): a beta-binomial,
    # P = C(4,3) B(5,2) / B(2,1) = 4 * (1/30) / (1/2) = 4/15
    nll = dirichlet_multinomial_nll(np.array([[3.0, 1.0]]), np.array([[2.0, 1.0]]), [("q", slice(0, 2))])
    assert float(np.asarray(nll)[0]) == pytest.approx(-math.log(4 / 15), rel=1e-5)
    assert dirichlet_multinomial_log_prob_numpy([[3, 1]], [[2, 1]])[0] == pytest.approx(math.log(4 / 15))


def test_unasked_questions_add_nothing_and_questions_add_up():
    spec = ModelSpec(crop_size=32)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, (5, spec.n_answers)).astype(np.float32)
    conc = (1 + 100 * rng.random((5, spec.n_answers))).astype(np.float32)
    slices = spec.question_slices
    bar = dict(slices)["bar"]
    with_bar = np.asarray(dirichlet_multinomial_nll(counts, conc, slices))
    counts_no_bar = counts.copy()
    counts_no_bar[:, bar] = 0
    without = np.asarray(dirichlet_multinomial_nll(counts_no_bar, conc, slices))
    only_bar = -dirichlet_multinomial_log_prob_numpy(counts[:, bar], conc[:, bar])
    np.testing.assert_allclose(with_bar - without, only_bar, rtol=1e-4)
    # a galaxy with no votes at all costs exactly nothing, whatever the prediction
    assert float(np.asarray(dirichlet_multinomial_nll(np.zeros((1, 34)), conc[:1], slices))[0]) == 0.0
    # the Keras loss object is the batch mean of the per-galaxy sums
    reference = -sum(dirichlet_multinomial_log_prob_numpy(counts[:, sl], conc[:, sl]) for _, sl in slices)
    assert float(make_loss(spec)(counts, conc)) == pytest.approx(reference.mean(), rel=1e-4)


def test_spec_orders_questions_and_rejects_unknown_ones():
    spec = ModelSpec(crop_size=32, questions=("bar", "smooth-or-featured"))
    assert spec.questions == ("smooth-or-featured", "bar")
    assert spec.n_answers == 3 + 3
    assert spec.answer_columns[0] == "smooth-or-featured_smooth"
    assert ModelSpec(crop_size=32).n_answers == sum(len(q.answers) for q in DECALS_DR5) == 34
    with pytest.raises(ValueError, match="unknown decision-tree question"):
        ModelSpec(crop_size=32, questions=("has-rings",))


def test_model_outputs_and_representation_shapes():
    spec = ModelSpec(crop_size=32)
    model = build_model(spec, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype(np.float32)
    conc = np.asarray(model.predict_on_batch(x))
    assert conc.shape == (3, 34) and np.all(conc > 1) and np.all(conc < 101)
    # untrained, every concentration starts near 1 + 100 sigmoid(-3) ~ 5.7, not 51
    assert np.all(np.abs(conc - (1 + 100 / (1 + np.exp(3.0)))) < 1.0)
    rep, conc2 = embedding_model(model).predict_on_batch(x)
    assert np.asarray(rep).shape == (3, REPRESENTATION_DIM)
    np.testing.assert_allclose(np.asarray(conc2), conc, rtol=1e-5)
    fractions = expected_vote_fractions(conc, spec)
    for _, sl in spec.question_slices:
        np.testing.assert_allclose(fractions[:, sl].sum(1), 1.0, rtol=1e-5)


def test_weights_round_trip_and_mismatched_file_is_named(tmp_path):
    spec = ModelSpec(crop_size=32, questions=("smooth-or-featured",))
    model = build_model(spec, seed=2)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    x = np.full((2, 32, 32, 1), 100.0, np.float32)
    again = load_trained(path, spec)
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)),
                               rtol=1e-5)
    assert len(file_sha256(path)) == 64
    with pytest.raises(ValueError, match="m.weights.h5"):
        load_trained(path, ModelSpec(crop_size=32))  # 34 answers, file has 3


def _small_net(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def test_optimizer_slots_exist_before_the_first_step_and_training_is_unchanged():
    import keras

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 6)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)
    eager = compile_with_adam(_small_net(5), 1e-2, "mse")
    n_slots = len(eager.optimizer.variables)
    # Adam: iterations and learning rate, then a first and a second moment per weight tensor
    assert n_slots == 2 + 2 * len(eager.trainable_variables)
    lazy = _small_net(5)
    lazy.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    created_in_step = []
    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        def record(next_creator, **kwargs):
            created_in_step.append(kwargs.get("name"))
            return next_creator(**kwargs)

        with tf.variable_creator_scope(record):
            eager.train_on_batch(x, y)
    else:
        eager.train_on_batch(x, y)
    # nothing created inside the traced step: TensorFlow traces it once, not twice
    assert created_in_step == [] and len(eager.optimizer.variables) == n_slots
    for _ in range(2):
        eager.train_on_batch(x, y)
    for _ in range(3):
        lazy.train_on_batch(x, y)
    for a, b in zip(eager.get_weights(), lazy.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(eager.get_weights()[0], _small_net(5).get_weights()[0])  # it did train


def test_machine_description_names_the_cpu_generation_and_its_numeric_extensions(tmp_path):
    import keras

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 sha_ni\n\n"
        "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\nmodel name\t: other\nflags\t\t: fpu\n")
    text = machine_description(2, cpuinfo_path=str(cpuinfo))
    assert text.startswith("AMD EPYC family 25 model 17 (")  # the first processor's, not the second's
    assert "; avx2 fma avx512f avx512_bf16; 2 threads)" in text  # listed extensions only, in a fixed order
    assert "sha_ni" not in text and "sse2" not in text
    assert f"keras {keras.__version__} {keras.config.backend()}" in text and text.endswith("; cpu")
    # without /proc/cpuinfo (not Linux) it still names the platform and says no extensions were read
    bare = machine_description(1, cpuinfo_path=str(tmp_path / "absent"))
    assert "(" in bare and "none listed; 1 threads)" in bare


def test_machine_description_names_the_gpu_model_on_a_gpu(tmp_path, monkeypatch):
    import morphtools.model as model_module

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n")
    monkeypatch.setattr(model_module, "accelerator", lambda: "gpu")
    monkeypatch.setattr(model_module, "gpu_name", lambda: "NVIDIA H200")
    assert machine_description(16, cpuinfo_path=str(cpuinfo)).endswith("; gpu (NVIDIA H200)")
    # a backend that cannot say which GPU still says it ran on one
    monkeypatch.setattr(model_module, "gpu_name", lambda: None)
    assert machine_description(16, cpuinfo_path=str(cpuinfo)).endswith("; gpu")
    # on this machine (CPU only) there is no GPU name to give
    monkeypatch.undo()
    if model_module.accelerator() == "cpu":
        assert model_module.gpu_name() is None
