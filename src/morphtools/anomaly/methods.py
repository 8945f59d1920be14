"""The anomaly-finding methods compared in paper sec. 3, each a plain function from
features and a simulated user to a :class:`RunResult`.

- :func:`gp_active_learning` (CNN + GP on the PCA-40 representation; Ellipse + GP on the
  ellipse features): a Gaussian process (rational quadratic + white kernel) models user
  interest; modAL's ``BayesianOptimizer`` with max expected improvement (tradeoff 0.5)
  picks batches of 10 among the unrated galaxies after a random first batch, to 200
  ratings. Final score: the GP mean over the unrated galaxies; the rated ones ranked by
  what the user said of them (``ActiveParams.rated_ranking``; see :func:`rated_first`).
- :func:`astronomaly_baseline` (LB21's configuration): isolation-forest anomaly score,
  the 200 most anomalous rated in that order (batches of 10), a random forest fitted to
  the ratings, and Astronomaly's NeighbourScore as the final score.
- :func:`random_ranking`: the reference; a random order.

Features are standardised (``StandardScaler``) inside each method. ``rate`` maps galaxy
indices to the user's ratings, so a method never sees a rating it did not ask for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy.linalg import cho_solve, cholesky, lapack, solve_triangular
from scipy.spatial.distance import pdist, squareform
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RationalQuadratic, Sum, WhiteKernel
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

METHODS = ("cnn_gp", "ellipse_gp", "baseline", "random")
# which features each method reads
METHOD_FEATURES = {"cnn_gp": "cnn", "ellipse_gp": "ellipse", "baseline": "ellipse", "random": None}
METHOD_LABELS = {"cnn_gp": "CNN + GP", "ellipse_gp": "Ellipse + GP", "baseline": "Baseline", "random": "Random"}


@dataclass(frozen=True)
class ActiveParams:
    n_ratings: int = 200
    first_batch: int = 10
    batch_size: int = 10
    tradeoff: float = 0.5          # EI's epsilon, on the 0..5 rating scale
    normalize_y: bool = False      # GaussianProcessRegressor(normalize_y=...)
    isolation_trees: int = 100
    forest_trees: int = 100
    neighbour_alpha: float = 1.0
    rating_scale: int = 5
    # how the GP methods' final ranking places the galaxies the user rated: "label" (the
    # paper's evaluation code: the anomalies among them first, the rest at 0) or "rating"
    rated_ranking: str = "label"


@dataclass
class RunResult:
    """What one run produced. ``acquired``: galaxy indices in the order they were rated,
    ``batches``: the batch each was rated in (0 = the first batch); ``ratings``: what the
    user said; ``scores``: the final ranking score of every galaxy (higher = more
    interesting); ``extra``: per-galaxy diagnostics (GP mean and std, anomaly score ...);
    ``step_seconds``: wall time of each acquisition step (refit + acquisition);
    ``interest_fits``: for the GP methods, :func:`describe_interest_fit` of every fit of the
    interest model (the first on the first batch, the last the final model)."""

    acquired: np.ndarray
    batches: np.ndarray
    ratings: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    interest_fits: list[dict] = field(default_factory=list)


def standardise(features: np.ndarray) -> np.ndarray:
    return StandardScaler().fit_transform(np.asarray(features, np.float64))


# Rows of the pool per block in InterestGP.predict: a 4,096 x 200 kernel block (6.5 MB)
# stays in cache between the distance, kernel, mean and variance passes.
PREDICT_BLOCK_ROWS = 4096


def rational_quadratic_cross(X: np.ndarray, Y: np.ndarray, length_scale: float, alpha: float) -> np.ndarray:
    """k(x, y) = (1 + |x - y|^2 / (2 alpha l^2))^-alpha for every row pair, shape (len(X), len(Y)).

    The same kernel as scikit-learn's ``RationalQuadratic``. The scaled squared distances
    c (|x|^2 + |y|^2 - 2 x.y), c = 1 / (2 alpha l^2), come from one matrix product of
    augmented rows [x, c |x|^2, 1] . [-2c y, 1, c |y|^2] (clipped at 0) rather than from
    ``cdist`` and separate passes, and the power is exp(-alpha log1p(.)), in place: four
    passes over the (len(X), len(Y)) block besides the product."""
    scale = 1.0 / (2.0 * alpha * length_scale**2)
    left = np.empty((len(X), X.shape[1] + 2))
    left[:, :-2] = X
    left[:, -2] = scale * np.einsum("ij,ij->i", X, X)
    left[:, -1] = 1.0
    right = np.empty((Y.shape[1] + 2, len(Y)))
    right[:-2] = (-2.0 * scale) * Y.T
    right[-2] = 1.0
    right[-1] = scale * np.einsum("ij,ij->i", Y, Y)
    K = left @ right
    np.maximum(K, 0.0, out=K)
    np.log1p(K, out=K)
    K *= -alpha
    np.exp(K, out=K)
    return K


def _is_exactly_rational_quadratic_plus_white(kernel) -> bool:
    """Exact types: a subclass may compute another kernel under the same names."""
    return (type(kernel) is Sum and type(kernel.k1) is RationalQuadratic
            and type(kernel.k2) is WhiteKernel)


class InterestGP(GaussianProcessRegressor):
    """scikit-learn's ``GaussianProcessRegressor`` with two faster paths for the interest
    model's rational quadratic + white kernel; the same mathematics, so modAL's loop and the
    method are unchanged.

    - ``log_marginal_likelihood`` (the refit's objective, ~20-50 evaluations a refit): the
      rated set's squared distances are kept across evaluations and the gradient is formed
      without the parent's (n, n, 3) derivative stack; about twice as fast. The value
      equals the parent's to ~1e-13 and the gradient to rounding (tested).
    - ``predict``: the posterior mean and standard deviation over a large pool in blocks
      of rows (agreement with the parent to 1e-8 relative is tested, ~1e-14 without
      normalize_y), about three times faster over a 60,000 x 40 pool on one core, in a
      block's memory (PREDICT_BLOCK_ROWS x n_rated) instead of two pool x n_rated
      matrices. The variance uses the inverse of the Cholesky factor (n_rated x n_rated,
      well conditioned through the white kernel) in a matrix product, which is faster
      than a triangular solve with 60,000 right-hand sides.

    Every other case (unfitted, covariance asked for, another kernel, a fixed
    hyperparameter, several targets) is the parent's."""

    def _is_rational_quadratic_plus_white(self) -> bool:
        return _is_exactly_rational_quadratic_plus_white(getattr(self, "kernel_", None)) and np.ndim(self.alpha_) == 1

    def _fits_fast_likelihood(self, theta) -> bool:
        """The fast likelihood applies to the rational quadratic + white kernel with all three
        hyperparameters free (theta = log alpha, log length scale, log noise) and one target."""
        kernel = getattr(self, "kernel_", None)
        return (theta is not None and _is_exactly_rational_quadratic_plus_white(kernel)
                and np.size(kernel.k1.length_scale) == 1
                and len(theta) == 3 and not any(h.fixed for h in kernel.hyperparameters)
                and np.ndim(self.y_train_) == 1 and np.ndim(self.alpha) == 0)

    def fit(self, X, y):
        """The parent's fit, on one BLAS thread: its n_rated x n_rated algebra is too small
        to share, and with threads contending for a busy machine's cores it ran 4-10x
        slower (measured). The posterior over the pool (``predict``) keeps the caller's
        threads. (The limit is process-wide while the fit runs: fits in concurrent Python
        threads would share it.)"""
        # the distances are kept for this refit's likelihood evaluations only: a later call
        # may come after the caller changed the training array in place (copy_X_train=False)
        self._refit_distances = {}
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                return super().fit(X, y)
        finally:
            self._refit_distances = None

    def _train_squared_distances(self) -> np.ndarray:
        """Squared distances between the rated galaxies, (n_rated, n_rated), computed as the
        kernel computes them; kept only during a refit (its ~20-50 likelihood evaluations)."""
        kept = getattr(self, "_refit_distances", None)  # None: a call outside fit
        if kept is not None and "distances" in kept:
            return kept["distances"]
        distances = squareform(pdist(self.X_train_, metric="sqeuclidean"))
        if kept is not None:
            kept["distances"] = distances
        return distances

    def log_marginal_likelihood(self, theta=None, eval_gradient=False, clone_kernel=True):
        """The parent's log marginal likelihood (and its gradient in log hyperparameters).

        For the rational quadratic + white kernel it reuses the rated set's squared
        distances across the optimiser's evaluations and forms the gradient as
        0.5 * sum((alpha alpha^T - K^-1) * dK/dtheta) over the symmetric kernel derivatives,
        instead of the parent's (n, n, 3) derivative stack and einsum, with K^-1 from
        LAPACK's potri. The same formulas as the parent's: the value agrees to ~1e-13 and
        the gradient to rounding (tested), so the optimiser reaches the same likelihood;
        where the likelihood is flat (large alpha, near a squared exponential) it may stop
        at a slightly different alpha, within its tolerance."""
        if not self._fits_fast_likelihood(theta):
            return super().log_marginal_likelihood(theta, eval_gradient=eval_gradient, clone_kernel=clone_kernel)
        theta = np.asarray(theta, np.float64)
        rq_alpha, length_scale, noise_level = np.exp(theta)  # theta's order: k1 (alpha, length_scale), k2
        if not clone_kernel:
            # the parent's documented side effect, without the theta setter's get_params
            # introspection (~1 ms, a quarter of an evaluation)
            self.kernel_.k1.alpha, self.kernel_.k1.length_scale = rq_alpha, length_scale
            self.kernel_.k2.noise_level = noise_level
        distances = self._train_squared_distances()
        base = distances * (1.0 / (2 * rq_alpha * length_scale**2))
        base += 1.0
        log_base = np.log(base)
        K = np.exp(-rq_alpha * log_base)  # (1 + d / (2 alpha l^2))^-alpha
        n = len(K)
        if eval_gradient:
            # d / (l^2 base): dK/dlog l = K d / (l^2 base); dK/dlog alpha = K (d / (2 l^2 base) - alpha log base)
            scaled = distances / (base * length_scale**2)
            length_scale_gradient = scaled * K
            alpha_gradient = scaled
            alpha_gradient *= 0.5
            alpha_gradient -= rq_alpha * log_base
            alpha_gradient *= K
        K.flat[:: n + 1] = 1 + noise_level + self.alpha
        try:
            L = cholesky(K, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            return (-np.inf, np.zeros_like(theta)) if eval_gradient else -np.inf
        y_train = self.y_train_
        alpha = cho_solve((L, True), y_train, check_finite=False)
        log_likelihood = (-0.5 * np.dot(y_train, alpha) - np.log(np.diag(L)).sum()
                          - n / 2 * np.log(2 * np.pi))
        if not eval_gradient:
            return log_likelihood
        K_inverse, info = lapack.dpotri(L, lower=1)
        if info != 0:
            return -np.inf, np.zeros_like(theta)
        # Gradient in theta_k: 0.5 (alpha^T dK_k alpha - trace(K^-1 dK_k)). The rational
        # quadratic's derivatives are symmetric with zero diagonals, so the trace is twice
        # the sum over K^-1's strict lower triangle, which is what dpotri fills; the white
        # kernel's derivative is noise_level * I.
        K_inverse_lower = np.tril(K_inverse, -1)
        gradient = np.array([
            alpha @ (alpha_gradient @ alpha) - 2 * np.vdot(K_inverse_lower, alpha_gradient),
            alpha @ (length_scale_gradient @ alpha) - 2 * np.vdot(K_inverse_lower, length_scale_gradient),
            noise_level * (alpha @ alpha - np.trace(K_inverse)),
        ])
        gradient *= 0.5
        return log_likelihood, gradient

    def predict(self, X, return_std=False, return_cov=False):
        if return_cov or not hasattr(self, "X_train_") or not self._is_rational_quadratic_plus_white():
            return super().predict(X, return_std=return_std, return_cov=return_cov)
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.X_train_.shape[1]:
            raise ValueError(f"X has shape {X.shape}; the GP was fitted on {self.X_train_.shape[1]} features")
        rq = self.kernel_.k1
        train = self.X_train_
        L_inverse = solve_triangular(self.L_, np.eye(len(train)), lower=True, check_finite=False) if return_std else None
        mean = np.empty(len(X))
        explained = np.empty(len(X)) if return_std else None
        for start in range(0, len(X), PREDICT_BLOCK_ROWS):
            block = slice(start, start + PREDICT_BLOCK_ROWS)
            K = rational_quadratic_cross(X[block], train, rq.length_scale, rq.alpha)
            mean[block] = K @ self.alpha_
            if return_std:
                V = L_inverse @ K.T
                explained[block] = np.einsum("ij,ij->j", V, V)
        mean = self._y_train_std * mean + self._y_train_mean
        if not return_std:
            return mean
        variance = self.kernel_.diag(X) - explained
        np.maximum(variance, 0.0, out=variance)
        return mean, np.sqrt(variance) * self._y_train_std


# A fitted interest model is "flat" when a rated galaxy's nearest rated neighbour is no
# more correlated with it than a typical rated galaxy is (see describe_interest_fit).
FLAT_CORRELATION_CONTRAST = 0.05


def describe_interest_fit(gp: GaussianProcessRegressor) -> dict:
    """What one refit of the interest model learned, from its fitted kernel and the rated
    galaxies it was fitted to (``gp.X_train_``, standardised feature units).

    Returns ``n_rated``; the hyperparameters where the kernel is the interest model's
    rational quadratic + white (``length_scale``, ``alpha``, ``noise_level``; else absent);
    ``neighbour_correlation``, the median over the rated galaxies of the signal kernel's
    correlation with their nearest rated neighbour; ``typical_correlation``, its median
    over all pairs of rated galaxies; and ``flat``: their difference is below
    ``FLAT_CORRELATION_CONTRAST``.

    A flat model treats every galaxy alike: its hyperparameters sit where the kernel
    correlates nothing (length scale at its lower bound) or everything equally (length
    scale at its upper bound, or alpha near zero), which is where maximum likelihood puts
    them when the ratings so far look like noise around one level (a first batch of 0s and
    1s). Its mean is then the same over the whole pool, and expected improvement ranks the
    unrated galaxies by the last digits of its uncertainty, which favour the extremes of
    the feature space, whether or not the anomalies are there."""
    kernel = gp.kernel_
    signal = kernel.k1 if isinstance(kernel, Sum) else kernel
    X = np.asarray(gp.X_train_, np.float64)
    out: dict = {"n_rated": int(len(X))}
    if _is_exactly_rational_quadratic_plus_white(kernel):
        out |= {"length_scale": float(kernel.k1.length_scale), "alpha": float(kernel.k1.alpha),
                "noise_level": float(kernel.k2.noise_level)}
    if len(X) < 2:
        return out | {"neighbour_correlation": float("nan"), "typical_correlation": float("nan"), "flat": True}
    K = signal(X)
    # correlation, so that a kernel with an amplitude reads on the same 0..1 scale
    scale = np.sqrt(np.diag(K))
    corr = K / np.outer(scale, scale)
    distances = squareform(pdist(X, metric="sqeuclidean"))
    np.fill_diagonal(distances, np.inf)
    nearest = corr[np.arange(len(X)), distances.argmin(axis=1)]
    pairs = corr[np.triu_indices(len(X), k=1)]
    neighbour, typical = float(np.median(nearest)), float(np.median(pairs))
    return out | {"neighbour_correlation": neighbour, "typical_correlation": typical,
                  "flat": bool(neighbour - typical < FLAT_CORRELATION_CONTRAST)}


def make_gp(seed: int, normalize_y: bool = False) -> InterestGP:
    """The interest model: rational quadratic + white kernel, hyperparameters fitted by
    maximum likelihood at every refit."""
    return InterestGP(kernel=RationalQuadratic() + WhiteKernel(), normalize_y=normalize_y, random_state=seed)


@contextlib.contextmanager
def _quiet():
    """Hyperparameters at their bounds (ConvergenceWarning) are routine with a few ratings;
    modAL 0.4.2.1's force_all_finite FutureWarning is what the scikit-learn pin guards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*force_all_finite.*", category=FutureWarning)
        yield


def _batch_sizes(params: ActiveParams) -> list[int]:
    if params.n_ratings < params.first_batch:
        raise ValueError(f"n_ratings {params.n_ratings} < first_batch {params.first_batch}")
    sizes, left = [params.first_batch], params.n_ratings - params.first_batch
    while left > 0:
        sizes.append(min(params.batch_size, left))
        left -= sizes[-1]
    return sizes


def gp_active_learning(features: np.ndarray, rate: Callable[[np.ndarray], np.ndarray], params: ActiveParams,
                       seed: int, log=None) -> RunResult:
    """GP + max-EI active learning with modAL (see the module docstring)."""
    from modAL.acquisition import max_EI
    from modAL.models import BayesianOptimizer

    X = standardise(features)
    n = len(X)
    sizes = _batch_sizes(params)
    if params.n_ratings > n:
        raise ValueError(f"{params.n_ratings} ratings asked for but only {n} galaxies")
    rng = np.random.default_rng(seed)
    first = rng.choice(n, sizes[0], replace=False)
    acquired, batches, ratings = [first], [np.zeros(len(first), int)], [rate(first)]
    rated = np.zeros(n, bool)
    rated[first] = True
    with _quiet():
        optimizer = BayesianOptimizer(estimator=make_gp(seed, params.normalize_y),
                                      query_strategy=partial(max_EI, tradeoff=params.tradeoff),
                                      X_training=X[first], y_training=ratings[0].astype(float))
    fits = [describe_interest_fit(optimizer.estimator)]
    steps = []
    for b, size in enumerate(sizes[1:], start=1):
        start = time.perf_counter()
        pool = np.flatnonzero(~rated)
        with _quiet():
            query, *_ = optimizer.query(X[pool], n_instances=size)
        chosen = pool[np.asarray(query, int).ravel()]
        new = rate(chosen)
        with _quiet():
            optimizer.teach(X[chosen], new.astype(float))
        steps.append(time.perf_counter() - start)
        fits.append(describe_interest_fit(optimizer.estimator))
        rated[chosen] = True
        acquired.append(chosen)
        batches.append(np.full(len(chosen), b))
        ratings.append(new)
        if log is not None:
            log.info("batch %d: %d rated, max rating so far %d, interest model %s, step %.2f s", b, rated.sum(),
                     max(r.max() for r in ratings), "flat" if fits[-1]["flat"] else "fitted", steps[-1])
    acquired = np.concatenate(acquired)
    ratings = np.concatenate(ratings).astype(int)
    mean, std = optimizer.estimator.predict(X, return_std=True)
    # rated galaxies ranked by rating; run_method's rated_first re-ranks them by label
    return RunResult(acquired=acquired, batches=np.concatenate(batches), ratings=ratings,
                     scores=known_ratings_first(mean, acquired, ratings),
                     extra={"gp_mean": mean, "gp_std": std}, step_seconds=steps, interest_fits=fits)


def known_ratings_first(predicted: np.ndarray, acquired: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Final score: the model's prediction, replaced by the known rating where there is one."""
    scores = np.asarray(predicted, float).copy()
    scores[acquired] = ratings
    return scores


# The paper's evaluation code scores a rated galaxy 100 x its anomaly label: far above any
# prediction on the 0..5 rating scale when it is an anomaly, at the scale's bottom when not.
RATED_ANOMALY_SCORE = 100.0
RATED_OTHER_SCORE = 0.0


def known_labels_first(predicted: np.ndarray, acquired: np.ndarray, rated_is_anomaly: np.ndarray) -> np.ndarray:
    """Final score as the paper computed it for the GP methods: the model's prediction,
    except that a rated galaxy scores ``RATED_ANOMALY_SCORE`` when it is one of the
    anomalies sought and ``RATED_OTHER_SCORE`` when not. So every anomaly the user has
    seen heads the list, and a galaxy they rated highly but that is not an anomaly (a GZ2
    "odd" fraction of 0.8: rating 4) does not take a place near the top from an unseen
    one."""
    scores = np.asarray(predicted, float).copy()
    scores[acquired] = np.where(np.asarray(rated_is_anomaly, bool), RATED_ANOMALY_SCORE, RATED_OTHER_SCORE)
    return scores


RATED_RANKINGS = ("label", "rating")


def _check_rated_ranking(rated_ranking: str, is_anomaly) -> None:
    if rated_ranking not in RATED_RANKINGS:
        raise ValueError(f"unknown rated_ranking {rated_ranking!r}; known: {RATED_RANKINGS}")
    if rated_ranking == "label" and is_anomaly is None:
        raise ValueError("rated_ranking 'label' ranks the rated galaxies by their anomaly label: pass is_anomaly")


def rated_first(result: RunResult, rated_ranking: str, is_anomaly: np.ndarray | None) -> RunResult:
    """``result`` with its scores re-ranked for the rated galaxies: by the anomaly label
    (``"label"``, :func:`known_labels_first`; ``is_anomaly`` of every galaxy, read only
    where rated) or by the user's rating (``"rating"``, :func:`known_ratings_first`)."""
    _check_rated_ranking(rated_ranking, is_anomaly)
    if rated_ranking == "rating":
        return result  # gp_active_learning's own scores rank the rated galaxies by rating
    scores = known_labels_first(result.extra["gp_mean"], result.acquired, np.asarray(is_anomaly, bool)[result.acquired])
    return dataclasses.replace(result, scores=scores)


def isolation_forest_score(X: np.ndarray, seed: int, trees: int = 100, scale: float = 5.0) -> np.ndarray:
    """Astronomaly's anomaly score: -decision_function of an isolation forest (contamination
    'auto'), min-max scaled to [0, scale] (higher = more anomalous)."""
    forest = IsolationForest(n_estimators=trees, contamination="auto", random_state=seed).fit(X)
    raw = -forest.decision_function(X)
    span = raw.max() - raw.min()
    return np.zeros(len(X)) if span == 0 else scale * (raw - raw.min()) / span


def neighbour_score(anomaly_score: np.ndarray, predicted_interest: np.ndarray, distance: np.ndarray,
                    alpha: float = 1.0, scale: float = 5.0) -> np.ndarray:
    """Astronomaly's NeighbourScore: S = a tanh(exp(alpha d / mean(d)) - 1 + arctanh(0.1 +
    0.85 u / scale)), with a the anomaly score, u the regressor's predicted interest and d
    the distance to the nearest rated galaxy. Far from any rated galaxy S tends to a; at a
    rated one it is a (0.1 + 0.85 u / scale)."""
    d = np.asarray(distance, float)
    mean_d = d.mean()
    d0 = d / mean_d if mean_d > 0 else np.zeros_like(d)
    u = np.clip(np.asarray(predicted_interest, float), 0, scale)
    return np.asarray(anomaly_score, float) * np.tanh(np.exp(alpha * d0) - 1 + np.arctanh(0.1 + 0.85 * u / scale))


def astronomaly_baseline(features: np.ndarray, rate: Callable[[np.ndarray], np.ndarray], params: ActiveParams,
                         seed: int, log=None) -> RunResult:
    """LB21's configuration (see the module docstring)."""
    X = standardise(features)
    if params.n_ratings > len(X):
        raise ValueError(f"{params.n_ratings} ratings asked for but only {len(X)} galaxies")
    start = time.perf_counter()
    anomaly = isolation_forest_score(X, seed, params.isolation_trees, params.rating_scale)
    order = np.argsort(-anomaly, kind="stable")
    acquired = order[: params.n_ratings]
    sizes = _batch_sizes(params)
    batches = np.repeat(np.arange(len(sizes)), sizes)
    ratings = rate(acquired).astype(int)
    forest = RandomForestRegressor(n_estimators=params.forest_trees, random_state=seed).fit(X[acquired], ratings)
    interest = forest.predict(X)
    distance = NearestNeighbors(n_neighbors=1).fit(X[acquired]).kneighbors(X)[0][:, 0]
    scores = neighbour_score(anomaly, interest, distance, params.neighbour_alpha, params.rating_scale)
    elapsed = time.perf_counter() - start
    if log is not None:
        log.info("baseline: %d rated, max rating %d, %.2f s", len(acquired), ratings.max(), elapsed)
    return RunResult(acquired=acquired, batches=batches, ratings=ratings, scores=scores,
                     extra={"anomaly_score": anomaly, "forest_interest": interest, "distance": distance},
                     step_seconds=[elapsed])


def random_ranking(n: int, rate: Callable[[np.ndarray], np.ndarray], params: ActiveParams, seed: int,
                   log=None) -> RunResult:
    """The reference: galaxies in a random order; the first ``n_ratings`` are the ones the
    user would have been shown (and rated)."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    acquired = np.argsort(-scores, kind="stable")[: min(params.n_ratings, n)]
    sizes = _batch_sizes(params)
    batches = np.repeat(np.arange(len(sizes)), sizes)[: len(acquired)]
    return RunResult(acquired=acquired, batches=batches, ratings=rate(acquired).astype(int), scores=scores)


def run_method(method: str, features: np.ndarray | None, ratings: np.ndarray, params: ActiveParams, seed: int,
               log=None, is_anomaly: np.ndarray | None = None) -> RunResult:
    """Run ``method`` on one experiment; ``ratings`` are every galaxy's (hidden) ratings,
    revealed only for the galaxies a method asks about; ``is_anomaly`` (every galaxy's
    label) is read only for the rated galaxies, by the GP methods' final ranking when
    ``params.rated_ranking`` is "label" (see :func:`rated_first`)."""
    ratings = np.asarray(ratings, int)

    def rate(idx):
        return ratings[np.asarray(idx, int)]

    if method in ("cnn_gp", "ellipse_gp"):
        # a bad setting fails before the search, not after its 200 ratings
        _check_rated_ranking(params.rated_ranking, is_anomaly)
        return rated_first(gp_active_learning(features, rate, params, seed, log), params.rated_ranking, is_anomaly)
    if method == "baseline":
        return astronomaly_baseline(features, rate, params, seed, log)
    if method == "random":
        return random_ranking(len(ratings), rate, params, seed, log)
    raise ValueError(f"unknown anomaly method {method!r}; known: {METHODS}")
