"""The anomaly-finding methods: GP + expected improvement (modAL), the Astronomaly
baseline, random ordering; and the scikit-learn pin modAL 0.4.2.1 needs."""

import inspect
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sklearn
from packaging.version import Version

from morphtools.anomaly import methods
from morphtools.anomaly.methods import (
    ActiveParams,
    InterestGP,
    describe_interest_fit,
    isolation_forest_score,
    known_labels_first,
    known_ratings_first,
    make_gp,
    neighbour_score,
    run_method,
)

ROOT = Path(__file__).resolve().parents[1]


def test_scikit_learn_is_pinned_below_1_8_for_modal():
    """modAL 0.4.2.1 (unmaintained) calls check_X_y(..., force_all_finite=...), which
    scikit-learn 1.8 removed (renamed ensure_all_finite in 1.6). Keep scikit-learn < 1.8."""
    import modAL

    assert Version(sklearn.__version__) < Version("1.8")
    assert "force_all_finite" in inspect.signature(sklearn.utils.check_X_y).parameters
    learners = Path(modAL.__file__).parent / "models" / "learners.py"
    assert "force_all_finite=" in learners.read_text()  # what the pin protects
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins["modAL-python"] == "0.4.2.1" and Version(pins["scikit-learn"]) < Version("1.8")
    env = (ROOT / "workflow/envs/anomaly.yaml").read_text()
    assert "scikit-learn=1.7" in env and "modAL-python==0.4.2.1" in env


def test_modal_bayesian_optimizer_end_to_end():
    from modAL.acquisition import max_EI
    from modAL.models import BayesianOptimizer
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = -np.sum(X**2, axis=1)
    opt = BayesianOptimizer(GaussianProcessRegressor(RationalQuadratic() + WhiteKernel(), random_state=0),
                            query_strategy=max_EI, X_training=X[:5], y_training=y[:5])
    for _ in range(3):
        idx, rows = opt.query(X, n_instances=4, tradeoff=0.5)
        assert len(set(idx.tolist())) == 4 and rows.shape == (4, 3)
        opt.teach(X[idx], y[idx])
    assert opt.X_training.shape == (17, 3) and opt.y_max == opt.y_training.max()


def clustered_survey(n=400, d=8, seed=0):
    """Features with one tight cluster of high-interest galaxies and a smooth interest
    gradient towards it (the situation the GP is built for)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    centre = np.zeros(d)
    centre[:2] = 2.5
    hot = rng.choice(n, 12, replace=False)
    X[hot] = centre + 0.2 * rng.normal(size=(12, d))
    fraction = np.exp(-np.sum((X - centre) ** 2, axis=1) / 8)
    ratings = np.round(5 * fraction).astype(int)
    return X, ratings


# rated galaxies ranked by rating: these tests need no anomaly labels (the workflow's
# default, by label, has its own test)
SMALL = ActiveParams(n_ratings=40, first_batch=10, batch_size=10, rated_ranking="rating")


def test_gp_active_learning_rates_unique_galaxies_in_batches_and_finds_the_cluster():
    X, ratings = clustered_survey()
    result = run_method("cnn_gp", X, ratings, SMALL, seed=3)
    assert len(result.acquired) == 40 and len(set(result.acquired.tolist())) == 40
    assert result.batches.tolist() == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    np.testing.assert_array_equal(result.ratings, ratings[result.acquired])
    # rated galaxies carry their known rating; the rest the GP mean
    np.testing.assert_array_equal(result.scores[result.acquired], ratings[result.acquired])
    unrated = np.setdiff1d(np.arange(len(X)), result.acquired)
    np.testing.assert_allclose(result.scores[unrated], result.extra["gp_mean"][unrated])
    assert len(result.step_seconds) == 3
    # one description per fit: on the first batch, then after each of the 3 batches
    assert [fit["n_rated"] for fit in result.interest_fits] == [10, 20, 30, 40]
    # expected improvement goes for the high-interest cluster far more than chance (~3%)
    assert (ratings[result.acquired[10:]] >= 4).mean() > 0.2
    # the same seed repeats the run exactly; another seed starts from another random batch
    again = run_method("cnn_gp", X, ratings, SMALL, seed=3)
    np.testing.assert_array_equal(again.acquired, result.acquired)
    other = run_method("ellipse_gp", X, ratings, SMALL, seed=4)
    assert set(other.acquired[:10]) != set(result.acquired[:10])


def test_interest_fit_is_flat_when_the_ratings_look_like_noise_and_not_when_they_follow_the_features():
    """Ratings that rise smoothly across the feature space fit a kernel whose correlations
    reach a galaxy's neighbours and fade with distance; ratings that are noise around one
    level (a first batch of 0s and 1s) fit a kernel that treats every galaxy alike."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    structured = make_gp(0).fit(X, 2.5 + 2.0 * np.tanh(X[:, 0]))
    fit = describe_interest_fit(structured)
    assert fit["n_rated"] == 60 and not fit["flat"]
    assert fit["neighbour_correlation"] > fit["typical_correlation"] + 0.2
    assert {"length_scale", "alpha", "noise_level"} <= set(fit)
    noise = make_gp(0).fit(X, rng.binomial(1, 0.2, 60).astype(float))
    fit = describe_interest_fit(noise)
    assert fit["flat"]
    assert fit["neighbour_correlation"] - fit["typical_correlation"] < methods.FLAT_CORRELATION_CONTRAST
    # by hand: a kernel fixed at a length scale of 1 correlates neighbours 0.1 apart
    # (~0.995) far more than typical pairs (~3 apart, ~0.1); one of 1e5 correlates all alike
    from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel
    line = np.concatenate([np.arange(0, 1, 0.1), np.arange(5, 6, 0.1)])[:, None]
    for length_scale, flat in ((1.0, False), (1e5, True)):
        gp = InterestGP(kernel=RationalQuadratic(length_scale, 1.0) + WhiteKernel(0.1), optimizer=None)
        fit = describe_interest_fit(gp.fit(line, np.zeros(len(line))))
        assert fit["flat"] is flat and fit["length_scale"] == pytest.approx(length_scale)
        expected = (1 + 0.1**2 / (2 * length_scale**2)) ** -1.0
        assert fit["neighbour_correlation"] == pytest.approx(expected)


@pytest.mark.parametrize("normalize_y", [False, True])
def test_interest_gp_predicts_what_scikit_learn_predicts(monkeypatch, normalize_y):
    from sklearn.base import clone
    from sklearn.gaussian_process import GaussianProcessRegressor

    monkeypatch.setattr(methods, "PREDICT_BLOCK_ROWS", 700)  # several blocks and a ragged last one
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6))
    y = np.round(5 * np.exp(-np.sum(X[:, :2] ** 2, axis=1) / 4) + rng.normal(0, 0.3, len(X))).clip(0, 5)
    fast = make_gp(0, normalize_y).fit(X[:60], y[:60])
    # the fitted hyperparameters, held: this test is about the posterior, the next about the fit
    reference = GaussianProcessRegressor(kernel=fast.kernel_, normalize_y=normalize_y, optimizer=None,
                                         random_state=0).fit(X[:60], y[:60])
    assert reference.kernel_.theta.tolist() == fast.kernel_.theta.tolist()
    pool = X[10:]  # includes 50 of the rated galaxies, where the std is the white noise alone
    mean, std = fast.predict(pool, return_std=True)
    ref_mean, ref_std = reference.predict(pool, return_std=True)
    assert mean.shape == std.shape == (len(pool),)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(std, ref_std, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(fast.predict(pool), ref_mean, rtol=1e-8, atol=1e-9)
    # the parent's code for the covariance, an unfitted model and another kernel
    _, cov = fast.predict(pool[:5], return_cov=True)
    np.testing.assert_allclose(cov, reference.predict(pool[:5], return_cov=True)[1], atol=1e-10)
    np.testing.assert_array_equal(make_gp(0).predict(pool[:5], return_std=True)[1], np.sqrt(2.0))
    from sklearn.gaussian_process.kernels import RBF
    other = InterestGP(kernel=RBF(), random_state=0).fit(X[:60], y[:60])
    np.testing.assert_array_equal(other.predict(pool, return_std=True)[1],
                                  GaussianProcessRegressor(kernel=RBF(), random_state=0).fit(X[:60], y[:60])
                                  .predict(pool, return_std=True)[1])
    assert isinstance(clone(fast), InterestGP)
    with pytest.raises(ValueError, match="fitted on 6 features"):
        fast.predict(pool[:, :5])


def _rated_survey(n_rated=80, dims=8, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rated, dims))
    y = np.round(5 * np.exp(-np.sum(X[:, :2] ** 2, axis=1) / 4) + rng.normal(0, 0.3, n_rated)).clip(0, 5)
    return X, y


def _parent_likelihood_must_not_run(*args, **kwargs):
    raise AssertionError("scikit-learn's log_marginal_likelihood ran instead of InterestGP's")


@pytest.mark.parametrize("normalize_y", [False, True])
def test_interest_gp_likelihood_and_gradient_are_scikit_learns(monkeypatch, normalize_y):
    from sklearn.gaussian_process import GaussianProcessRegressor

    X, y = _rated_survey()
    reference = GaussianProcessRegressor(**make_gp(0, normalize_y).get_params(deep=False)).fit(X, y)
    with monkeypatch.context() as patch:  # the fast path, never the parent's, in the fit
        patch.setattr(GaussianProcessRegressor, "log_marginal_likelihood", _parent_likelihood_must_not_run)
        fast = make_gp(0, normalize_y).fit(X, y)
    bounds = fast.kernel_.bounds
    thetas = [fast.kernel_.theta, np.zeros(3), np.array([5.0, 2.0, -3.0]), bounds[:, 0], bounds[:, 1],
              np.array([bounds[0, 1], 0.5, bounds[2, 0]])]
    for theta in thetas:
        assert fast._fits_fast_likelihood(theta)
        value, gradient = fast.log_marginal_likelihood(theta, eval_gradient=True)
        ref_value, ref_gradient = reference.log_marginal_likelihood(theta, eval_gradient=True)
        assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-9), theta
        # the gradient's terms are O(n): agreement to rounding, measured against them
        np.testing.assert_allclose(gradient, ref_gradient, rtol=1e-9, atol=1e-9 * len(X), err_msg=str(theta))
        assert fast.log_marginal_likelihood(theta) == pytest.approx(ref_value, rel=1e-12, abs=1e-9)
    # clone_kernel=False leaves the fitted kernel at theta, as the parent documents
    fast.log_marginal_likelihood(thetas[2], eval_gradient=True, clone_kernel=False)
    np.testing.assert_allclose(fast.kernel_.theta, thetas[2], rtol=1e-14)


def test_interest_gp_fit_reaches_scikit_learns_maximum_likelihood():
    """The optimiser may stop elsewhere on a flat ridge (large rational-quadratic alpha is
    near a squared exponential) after rounding-level differences, but at the same likelihood
    and, to the optimiser's tolerance, the same posterior."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 40))
    centre = np.r_[np.full(3, 2.0), np.zeros(37)]
    # interest in 6 of 40 dimensions: the likelihood is flat in alpha at large alpha here
    y = np.round(5 * np.exp(-np.sum((X[:, :6] - centre[:6]) ** 2, axis=1) / 10) + rng.normal(0, 0.3, 200)).clip(0, 5)
    pool = np.random.default_rng(3).normal(size=(2000, 40))
    for seed in range(3):
        rows = np.random.default_rng(seed).permutation(len(X))[:150 + 25 * seed]
        fast = make_gp(seed).fit(X[rows], y[rows])
        reference = GaussianProcessRegressor(**make_gp(seed).get_params(deep=False)).fit(X[rows], y[rows])
        assert fast.log_marginal_likelihood_value_ == pytest.approx(reference.log_marginal_likelihood_value_,
                                                                    rel=1e-8)
        for ours, theirs in zip(fast.predict(pool, return_std=True), reference.predict(pool, return_std=True), strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-3)
    # a refit on the same array object with new values (copy_X_train=False) sees the new values
    shared = X[:60].copy()
    reused = InterestGP(kernel=make_gp(0).kernel, copy_X_train=False, random_state=0).fit(shared, y[:60])
    shared[:] = X[60:120]
    reused.fit(shared, y[60:120])
    fresh = make_gp(0).fit(X[60:120], y[60:120])
    assert reused.log_marginal_likelihood_value_ == pytest.approx(fresh.log_marginal_likelihood_value_, rel=1e-10)
    # a kernel outside the fast path (a fixed hyperparameter; a subclass of the kernel) is
    # the parent's, exactly
    kernel = RationalQuadratic(alpha_bounds="fixed") + WhiteKernel()
    fixed = InterestGP(kernel=kernel, random_state=0).fit(X[:60], y[:60])
    assert not fixed._fits_fast_likelihood(fixed.kernel_.theta)

    class OtherRationalQuadratic(RationalQuadratic):
        pass

    other = InterestGP(kernel=OtherRationalQuadratic() + WhiteKernel(), random_state=0).fit(X[:60], y[:60])
    assert not other._fits_fast_likelihood(other.kernel_.theta)
    assert fixed.kernel_.theta.tolist() == GaussianProcessRegressor(kernel=kernel, random_state=0).fit(
        X[:60], y[:60]).kernel_.theta.tolist()


def test_interest_gp_refits_on_one_blas_thread_and_predicts_on_the_callers(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen = {"fit": set(), "predict": set()}
    likelihood, kernel = InterestGP.log_marginal_likelihood, methods.rational_quadratic_cross

    def recording_likelihood(self, *args, **kwargs):
        seen["fit"] |= blas_threads()
        return likelihood(self, *args, **kwargs)

    def recording_kernel(*args, **kwargs):
        seen["predict"] |= blas_threads()
        return kernel(*args, **kwargs)

    monkeypatch.setattr(InterestGP, "log_marginal_likelihood", recording_likelihood)
    monkeypatch.setattr(methods, "rational_quadratic_cross", recording_kernel)
    X, y = _rated_survey()
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip("BLAS here cannot run two threads")
        gp = make_gp(0).fit(X, y)
        gp.predict(X)
        assert blas_threads() == {2}  # restored after the fit
    assert seen == {"fit": {1}, "predict": {2}}


def test_gp_active_learning_acquires_what_scikit_learns_gp_acquires(monkeypatch):
    from sklearn.gaussian_process import GaussianProcessRegressor

    X, ratings = clustered_survey()
    fast = run_method("cnn_gp", X, ratings, SMALL, seed=5)
    monkeypatch.setattr(methods, "make_gp", lambda seed, normalize_y=False: GaussianProcessRegressor(
        **make_gp(seed, normalize_y).get_params(deep=False)))
    reference = run_method("cnn_gp", X, ratings, SMALL, seed=5)
    np.testing.assert_array_equal(fast.acquired, reference.acquired)
    # the refits' optimiser stops within its tolerance of scikit-learn's optimum
    np.testing.assert_allclose(fast.scores, reference.scores, atol=1e-5)


def test_known_ratings_replace_predictions():
    scores = known_ratings_first(np.array([0.5, 4.2, 1.0]), np.array([1]), np.array([2]))
    assert scores.tolist() == [0.5, 2.0, 1.0]


def test_known_labels_put_the_rated_anomalies_first_and_the_other_rated_galaxies_at_zero():
    """The paper's evaluation code: a rated galaxy scores 100 x its anomaly label."""
    predicted = np.array([0.5, 4.2, 1.0, -0.3, 3.9])
    scores = known_labels_first(predicted, np.array([1, 2]), np.array([False, True]))
    assert scores.tolist() == [0.5, 0.0, 100.0, -0.3, 3.9]
    # the rated anomaly heads the ranking; the highly rated non-anomaly falls below the
    # unrated galaxies the model likes, but stays above those it predicts below 0
    assert np.argsort(-scores, kind="stable").tolist() == [2, 4, 0, 1, 3]


def test_gp_methods_rank_rated_galaxies_by_label_or_by_rating():
    X, ratings = clustered_survey()
    is_anomaly = ratings >= 4
    by_label = run_method("cnn_gp", X, ratings, replace(SMALL, rated_ranking="label"), seed=3, is_anomaly=is_anomaly)
    rated = by_label.acquired
    np.testing.assert_array_equal(by_label.scores[rated], np.where(is_anomaly[rated], 100.0, 0.0))
    unrated = np.setdiff1d(np.arange(len(X)), rated)
    np.testing.assert_allclose(by_label.scores[unrated], by_label.extra["gp_mean"][unrated])
    by_rating = run_method("cnn_gp", X, ratings, SMALL, seed=3)
    np.testing.assert_array_equal(by_rating.acquired, rated)  # the search itself is the same
    np.testing.assert_array_equal(by_rating.scores[rated], ratings[rated])
    with pytest.raises(ValueError, match="is_anomaly"):
        run_method("cnn_gp", X, ratings, replace(SMALL, rated_ranking="label"), seed=3)
    with pytest.raises(ValueError, match="rated_ranking"):
        run_method("ellipse_gp", X, ratings, replace(SMALL, rated_ranking="stars"), seed=3, is_anomaly=is_anomaly)
    # the baseline and random orders are the methods' own, whatever the setting
    baseline = run_method("baseline", X, ratings, SMALL, seed=3)
    assert not np.isin(baseline.scores[baseline.acquired], [0.0, 100.0]).all()


def test_isolation_forest_score_is_scaled_to_zero_five_and_finds_outliers():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 4)), rng.normal(8, 0.1, size=(3, 4))])
    score = isolation_forest_score(X, seed=0)
    assert score.min() == 0 and score.max() == pytest.approx(5)
    assert set(np.argsort(-score)[:3]) == {300, 301, 302}


def test_neighbour_score_by_hand():
    # at a rated galaxy (d = 0): S = a (0.1 + 0.85 u / 5)
    assert neighbour_score(np.array([4.0, 4.0]), np.array([5.0, 5.0]), np.array([0.0, 2.0]))[0] == \
        pytest.approx(4 * 0.95)
    # far away (d0 = 2): S = a tanh(e^2 - 1 + arctanh(0.1)) ~ a
    a, u, d = np.array([2.0, 2.0]), np.array([0.0, 0.0]), np.array([0.0, 4.0])
    s = neighbour_score(a, u, d)
    assert s[0] == pytest.approx(2 * 0.1)
    assert s[1] == pytest.approx(2 * np.tanh(np.exp(2.0) - 1 + np.arctanh(0.1)))


def test_baseline_rates_the_isolation_forest_top_in_order():
    X, ratings = clustered_survey()
    result = run_method("baseline", X, ratings, SMALL, seed=0)
    anomaly = result.extra["anomaly_score"]
    np.testing.assert_array_equal(result.acquired, np.argsort(-anomaly, kind="stable")[:40])
    np.testing.assert_array_equal(result.ratings, ratings[result.acquired])
    assert result.batches.tolist() == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    assert (result.extra["distance"][result.acquired] == 0).all()
    assert np.isfinite(result.scores).all() and (result.scores >= 0).all()


def test_random_ordering_and_bad_requests():
    X, ratings = clustered_survey()
    result = run_method("random", None, ratings, SMALL, seed=0)
    assert len(result.acquired) == 40 and (np.argsort(-result.scores)[:40] == result.acquired).all()
    with pytest.raises(ValueError, match="unknown"):
        run_method("nope", X, ratings, SMALL, seed=0)
    with pytest.raises(ValueError, match="ratings asked for"):
        run_method("cnn_gp", X[:20], ratings[:20], SMALL, seed=0)
