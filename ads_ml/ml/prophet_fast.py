"""Prophet's point forecast (MAP fit) computed in-process, for tuning.

Prophet fits a short daily series by writing JSON files, starting a CmdStan process and running its
optimiser; on a 30-60 point series that round trip is most of the time. This module solves the same
maximum-a-posteriori problem as ``prophet.stan`` (linear growth, additive weekly seasonality, no
holidays) with SciPy in the calling process:

    y_scaled ~ Normal(trend(t) + X·beta, sigma_obs)
    trend(t) = (k + A(t)·delta)·t + (m − A(t)·(t_change·delta))
    k, m ~ Normal(0, 5); delta ~ Laplace(0, changepoint_prior_scale);
    beta ~ Normal(0, seasonality_prior_scale); sigma_obs ~ Normal⁺(0, 0.5)

with Prophet's own preprocessing: absmax scaling of y, time scaled to [0, 1] over the history,
``n_changepoints`` (25, fewer for short series) evenly over the first 80 % of the history, weekly
Fourier order 3 on days since the epoch (switched on when the history spans two weeks), yearly and
daily seasonality off (short daily series), and a constant series short-circuited as Prophet does.
The optimiser is the one Prophet asks CmdStan for: for fewer than 100 points, Stan's Newton method
(finite-difference Hessian of the gradient with Stan's own stencil, eigenvalues made negative
definite, step halving until the log density does not drop, stop when it moves by ≤ 1e-8), started
from Prophet's initial values — so the fit follows the same path as Prophet's and lands where
Prophet lands, not merely near the same optimum (where several grid points are nearly tied, that is
what makes the tuner choose as Prophet would); for longer series, L-BFGS-B with the analytic
gradient (delta split into positive and negative parts so the L1 prior stays smooth).
``ads_ml_tests/test_prophet_tuning.py`` checks the forecasts against Prophet itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs
from scipy.optimize import minimize

N_CHANGEPOINTS = 25
CHANGEPOINT_RANGE = 0.8
WEEKLY_ORDER = 3
WEEKLY_PERIOD = 7.0
#: Prophet asks for Newton below this many points and L-BFGS from it on.
NEWTON_MAX_POINTS = 100
_FD_EPSILON = 1e-3
_FD_PERTURBATIONS = np.array([-2.0, -1.0, 1.0, 2.0]) * _FD_EPSILON
_FD_COEFFICIENTS = np.array([1.0 / 12.0, -2.0 / 3.0, 2.0 / 3.0, -1.0 / 12.0])
_HALVINGS = 0.5 ** np.arange(0, 80)


def _neg_log_density(theta: np.ndarray, ys, t, D, X, tau, sps) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Negative log posterior (Stan's propto, no Jacobian) and its gradient, for a batch of
    parameter vectors ``theta`` (B × P) with layout k, m, delta[S], log sigma, beta[K]."""
    S = D.shape[1]
    k, m = theta[:, 0], theta[:, 1]
    delta = theta[:, 2:2 + S]
    log_sigma = theta[:, 2 + S]
    beta = theta[:, 3 + S:]
    sigma = np.exp(log_sigma)
    mean = k[:, None] * t[None, :] + m[:, None] + delta @ D.T + beta @ X.T
    r = ys[None, :] - mean
    rss = np.einsum("bn,bn->b", r, r)
    n = len(ys)
    f = (k * k + m * m) / 50.0 + np.abs(delta).sum(axis=1) / tau + 2.0 * sigma * sigma \
        + np.einsum("bk,bk->b", beta, beta) / (2 * sps * sps) + n * log_sigma + rss / (2 * sigma * sigma)
    g_mean = -r / (sigma * sigma)[:, None]
    g = np.empty_like(theta)
    g[:, 0] = k / 25.0 + g_mean @ t
    g[:, 1] = m / 25.0 + g_mean.sum(axis=1)
    g[:, 2:2 + S] = np.sign(delta) / tau + g_mean @ D
    g[:, 2 + S] = 4.0 * sigma * sigma + n - rss / (sigma * sigma)
    g[:, 3 + S:] = beta / (sps * sps) + g_mean @ X
    return f, g


class _StanHessian:
    """The Hessian ``grad_hess_log_prob`` returns, in closed form.

    Stan perturbs each coordinate by (−2ε, −ε, ε, 2ε), ε = 1e-3, and accumulates
    ``0.5·ε·c_i·gradient`` into row and column (c = 1/12, −2/3, 2/3, −1/12). Along the linear
    parameters (k, m, delta, beta) the gradient is linear plus a quadratic in the perturbation, and
    along log sigma it moves by exp(±2p); the stencil sums of those have closed forms (Σc_i = 0,
    Σc_i·p_i = ε, Σc_i·p_i² = 0, Σc_i·exp(a·p_i)), and the L1 prior contributes
    Σc_i·sign(delta + p_i)/τ. Same matrix as Stan's, without 4·P gradient evaluations."""

    def __init__(self, ys, t, D, X, tau, sps):  # noqa: ANN001
        n, S, K = len(ys), D.shape[1], X.shape[1]
        self.ys, self.S, self.K, self.tau, self.n = ys, S, K, tau, n
        self.P = 3 + S + K
        self.ls = 2 + S
        lin = np.r_[0, 1, np.arange(2, 2 + S), np.arange(3 + S, 3 + S + K)]
        self.lin = lin
        Z = np.column_stack([t, np.ones(n), D, X])  # d mean / d linear parameters, in `lin` order
        self.Z = Z
        self.ZtZ = Z.T @ Z
        self.prior = np.r_[1 / 25.0, 1 / 25.0, np.zeros(S), np.full(K, 1.0 / (sps * sps))]
        eps = _FD_EPSILON
        self.lin_block = np.ix_(lin, lin)
        self.eps_prior = eps * np.diag(self.prior)
        self.delta_diag = (np.arange(2, 2 + S), np.arange(2, 2 + S))
        self.c_minus2 = float(np.sum(_FD_COEFFICIENTS * np.exp(-2 * _FD_PERTURBATIONS)))
        self.c_plus2 = float(np.sum(_FD_COEFFICIENTS * np.exp(2 * _FD_PERTURBATIONS)))
        self.eps = eps
        self.t, self.D, self.X = t, D, X

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        S, eps, ls, lin = self.S, self.eps, self.ls, self.lin
        k, m = theta[0], theta[1]
        delta, beta = theta[2:2 + S], theta[3 + S:]
        sigma2 = np.exp(2 * theta[ls])
        r = self.ys - (k * self.t + m + self.D @ delta + self.X @ beta)
        Ztr = self.Z.T @ r
        J = np.zeros((self.P, self.P))  # stencil sums of the gradient of f = −log density
        J[self.lin_block] = (eps / sigma2) * self.ZtZ + self.eps_prior
        signs = np.sign(delta[:, None] + _FD_PERTURBATIONS[None, :])  # S × 4
        J[self.delta_diag] += signs @ _FD_COEFFICIENTS / self.tau
        J[lin, ls] = eps * 2.0 * Ztr / sigma2
        J[ls, lin] = self.c_minus2 * (-Ztr / sigma2)
        J[ls, ls] = 4.0 * sigma2 * self.c_plus2 - (r @ r) / sigma2 * self.c_minus2
        J = -0.5 * eps * J  # of the log density, scaled as Stan accumulates it
        return J + J.T


def _negative_definite_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Stan's make_negative_definite_and_solve: −V·diag(1/|λ|)·Vᵀ·g. When H is already negative
    definite that is H⁻¹g, found by a Cholesky factorisation of −H (several times cheaper than the
    eigendecomposition, which remains the fallback)."""
    factor, info = _potrf(-H, lower=False, clean=False)
    if info == 0:
        solution, _info = _potrs(factor, g, lower=False)
        return -solution
    eigenvalues, vectors = np.linalg.eigh(H)
    return vectors @ (-(vectors.T @ g) / np.abs(eigenvalues))


def _stan_newton(ys, t, D, X, tau, sps, theta, max_iterations: int = 10000) -> np.ndarray:  # noqa: ANN001
    """Stan's ``services::optimize::newton`` on Prophet's model (log density = −f)."""
    with np.errstate(all="ignore"):  # trial steps may overflow; they are rejected, as in Stan
        return _stan_newton_loop(ys, t, D, X, tau, sps, theta, max_iterations)


def _stan_newton_loop(ys, t, D, X, tau, sps, theta, max_iterations: int) -> np.ndarray:  # noqa: ANN001
    """The loop of Stan's Newton optimiser. The log density and its gradient are computed from
    the residuals with precomputed design matrices, and the trial steps of the line search in
    closed form along the search direction (the residuals move linearly with the step)."""
    hessian = _StanHessian(ys, t, D, X, tau, sps)
    Z, prior, lin, ls, S, n = hessian.Z, hessian.prior, hessian.lin, hessian.ls, hessian.S, len(ys)
    delta_slice = slice(2, 2 + S)  # positions of delta inside the linear parameters

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        th = theta[lin]
        log_sigma = theta[ls]
        sigma2 = np.exp(2 * log_sigma)
        r = ys - Z @ th
        rss = r @ r
        f = 0.5 * (prior * th) @ th + np.abs(th[delta_slice]).sum() / tau + 2 * sigma2 + n * log_sigma + rss / (2 * sigma2)
        g = np.empty_like(theta)
        g_lin = prior * th - (Z.T @ r) / sigma2
        g_lin[delta_slice] += np.sign(th[delta_slice]) / tau
        g[lin] = g_lin
        g[ls] = 4 * sigma2 + n - rss / sigma2
        return f, g, r

    def trial_values(theta: np.ndarray, r: np.ndarray, direction: np.ndarray, steps: np.ndarray) -> np.ndarray:
        th, d = theta[lin], direction[lin]
        zd = Z @ d
        rss = (r @ r) + 2 * steps * (r @ zd) + steps**2 * (zd @ zd)  # residual r + h·Z·d
        quad = 0.5 * (prior * th) @ th - steps * ((prior * th) @ d) + 0.5 * steps**2 * ((prior * d) @ d)
        l1 = np.abs(th[delta_slice][None, :] - steps[:, None] * d[delta_slice][None, :]).sum(axis=1) / tau
        log_sigma = theta[ls] - steps * direction[ls]
        sigma2 = np.exp(2 * log_sigma)
        return quad + l1 + 2 * sigma2 + n * log_sigma + rss / (2 * sigma2)

    f_now, _g, _r = value_and_gradient(theta)
    lp = -f_now
    for _ in range(max_iterations):
        last_lp = lp
        f0, g0, r0 = value_and_gradient(theta)
        lp0, grad = -f0, -g0
        direction = _negative_definite_solve(hessian(theta), grad)
        # Stan halves the step from 1 until the log density does not drop: all halvings are
        # evaluated at once (cheap in closed form), the first acceptable one taken.
        values = trial_values(theta, r0, direction, _HALVINGS)
        lps = np.where(np.isfinite(values), -values, -1e100)
        accepted = np.flatnonzero(lps >= lp0)
        if len(accepted) == 0:  # no step of size ≥ 2^-79 improves: Stan would take a null step
            break
        theta, lp = theta - _HALVINGS[accepted[0]] * direction, lps[accepted[0]]
        if abs(lp - last_lp) <= 1e-8:
            break
    return theta


class FastProphet:
    """``fit(ds, y)`` then ``predict(ds)``: Prophet's yhat for the given prior scales."""

    def __init__(self, changepoint_prior_scale: float = 0.05, seasonality_prior_scale: float = 10.0):
        self.changepoint_prior_scale = float(changepoint_prior_scale)
        self.seasonality_prior_scale = float(seasonality_prior_scale)
        if not (self.changepoint_prior_scale > 0 and self.seasonality_prior_scale > 0):
            raise ValueError(
                f"prior scales must be positive, got ({changepoint_prior_scale}, {seasonality_prior_scale})"
            )

    def fit(self, ds, y, init: np.ndarray | None = None) -> "FastProphet":  # noqa: ANN001
        ds = pd.to_datetime(pd.Series(ds)).reset_index(drop=True)
        y = np.asarray(y, dtype="float64")
        keep = ~np.isnan(y)
        ds, y = ds[keep].reset_index(drop=True), y[keep]
        if len(y) < 2:
            raise ValueError("Prophet needs at least 2 non-missing points")
        order = np.argsort(ds.to_numpy())
        ds, y = ds.iloc[order].reset_index(drop=True), y[order]
        self.start_ = ds.iloc[0]
        self.t_scale_ = (ds.iloc[-1] - self.start_).total_seconds()
        scale = np.abs(y).max()
        self.y_scale_ = scale if scale > 0 else 1.0
        ys = y / self.y_scale_
        t = self._t(ds)
        self.weekly_ = (ds.iloc[-1] - ds.iloc[0]) >= pd.Timedelta(days=14)
        hist_size = int(np.floor(len(ds) * CHANGEPOINT_RANGE))
        n_cp = min(N_CHANGEPOINTS, hist_size - 1)
        if n_cp > 0:
            idx = np.linspace(0, hist_size - 1, n_cp + 1).round().astype(int)
            self.t_change_ = np.sort(t[idx[1:]])
        else:
            self.t_change_ = np.array([0.0])  # Prophet's dummy changepoint
        X = self._seasonal(ds)
        A = (t[:, None] >= self.t_change_[None, :]).astype("float64")
        S, K = len(self.t_change_), X.shape[1]

        k0 = (ys[-1] - ys[0]) / (t[-1] - t[0])
        m0 = ys[0] - k0 * t[0]
        n = len(ys)
        if ys.min() == ys.max():
            # Prophet skips the optimiser for a constant series: the initial values, sigma 1e-9.
            self.k_, self.m_, self.delta_, self.beta_, self.sigma_ = k0, m0, np.zeros(S), np.zeros(K), 1e-9
            self.solution_ = None
            return self
        tau, sps = self.changepoint_prior_scale, self.seasonality_prior_scale
        tA = A * t[:, None]
        cA = A * self.t_change_[None, :]
        D = tA - cA  # d trend / d delta

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            k, m = theta[0], theta[1]
            dp, dn = theta[2:2 + S], theta[2 + S:2 + 2 * S]
            log_sigma = theta[2 + 2 * S]  # optimised on the log scale, as Stan does (no Jacobian)
            sigma = np.exp(log_sigma)
            beta = theta[3 + 2 * S:]
            delta = dp - dn
            mean = k * t + m + D @ delta + X @ beta
            r = ys - mean
            rss = r @ r
            f = (k * k + m * m) / 50.0 + (dp.sum() + dn.sum()) / tau + sigma * sigma / 0.5 \
                + (beta @ beta) / (2 * sps * sps) + n * log_sigma + rss / (2 * sigma * sigma)
            g_mean = -r / (sigma * sigma)  # d f / d mean
            g = np.empty_like(theta)
            g[0] = k / 25.0 + g_mean @ t
            g[1] = m / 25.0 + g_mean.sum()
            g_delta = D.T @ g_mean
            g[2:2 + S] = 1.0 / tau + g_delta
            g[2 + S:2 + 2 * S] = 1.0 / tau - g_delta
            g[2 + 2 * S] = sigma * (2 * sigma / 0.5) + n - rss / (sigma * sigma)
            g[3 + 2 * S:] = beta / (sps * sps) + X.T @ g_mean
            return f, g

        if n < NEWTON_MAX_POINTS:
            # Always from Prophet's initial values (no warm start): Prophet's path is the point.
            theta = _stan_newton(ys, t, D, X, tau, sps, np.concatenate([[k0, m0], np.zeros(S), [0.0], np.zeros(K)]))
            self.solution_ = theta
            self.k_, self.m_ = theta[0], theta[1]
            self.delta_ = theta[2:2 + S]
            self.sigma_ = float(np.exp(theta[2 + S]))
            self.beta_ = theta[3 + S:]
            return self
        if init is None or len(init) != 3 + 2 * S + K:
            init = np.concatenate([[k0, m0], np.zeros(2 * S), [0.0], np.zeros(K)])
        bounds = [(None, None)] * 2 + [(0.0, None)] * (2 * S) + [(None, None)] + [(None, None)] * K
        result = minimize(objective, init, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 10000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20})
        theta = result.x
        self.solution_ = theta
        self.k_, self.m_ = theta[0], theta[1]
        self.delta_ = theta[2:2 + S] - theta[2 + S:2 + 2 * S]
        self.sigma_ = float(np.exp(theta[2 + 2 * S]))
        self.beta_ = theta[3 + 2 * S:]
        return self

    def predict(self, ds) -> np.ndarray:  # noqa: ANN001
        ds = pd.to_datetime(pd.Series(ds)).reset_index(drop=True)
        t = self._t(ds)
        A = (t[:, None] >= self.t_change_[None, :]).astype("float64")
        trend = (self.k_ + A @ self.delta_) * t + (self.m_ + A @ (-self.t_change_ * self.delta_))
        seasonal = self._seasonal(ds) @ self.beta_ if len(self.beta_) else 0.0
        return (trend + seasonal) * self.y_scale_

    def predict_interval(self, ds, width: float = 0.95, samples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        """Prophet's uncertainty interval: trend paths with new changepoints drawn as a Poisson
        process (rate = changepoints per unit of scaled time, Laplace jumps of the fitted mean
        |delta|) plus observation noise sigma, quantiles of the simulated values."""
        ds = pd.to_datetime(pd.Series(ds)).reset_index(drop=True)
        rng = np.random.default_rng(seed)
        t = self._t(ds)
        seasonal = self._seasonal(ds) @ self.beta_ if len(self.beta_) else np.zeros(len(t))
        T = t.max()
        S = len(self.t_change_)
        scale = np.mean(np.abs(self.delta_)) + 1e-8
        A = (t[:, None] >= self.t_change_[None, :]).astype("float64")
        base = (self.k_ + A @ self.delta_) * t + (self.m_ + A @ (-self.t_change_ * self.delta_))
        # New changepoints after the history (t > 1): each adds delta·(t − cp) from cp on.
        n_changes = rng.poisson(S * (T - 1), samples) if T > 1 else np.zeros(samples, dtype=int)
        width_n = max(int(n_changes.max()), 1)
        new_t = 1 + rng.random((samples, width_n)) * max(T - 1, 0.0)
        new_delta = rng.laplace(0, scale, (samples, width_n))
        new_delta[np.arange(width_n)[None, :] >= n_changes[:, None]] = 0.0
        after = np.clip(t[None, None, :] - new_t[:, :, None], 0.0, None)  # samples × changes × days
        trend = base[None, :] + np.einsum("sc,scd->sd", new_delta, after)
        paths = (trend + seasonal[None, :] + rng.normal(0, self.sigma_, (samples, len(t)))) * self.y_scale_
        lower = np.quantile(paths, (1 - width) / 2, axis=0)
        upper = np.quantile(paths, (1 + width) / 2, axis=0)
        return lower, upper

    def _t(self, ds: pd.Series) -> np.ndarray:
        seconds = (ds - self.start_).dt.total_seconds().to_numpy()
        return seconds / self.t_scale_ if self.t_scale_ > 0 else seconds * 0.0

    def _seasonal(self, ds: pd.Series) -> np.ndarray:
        if not self.weekly_:
            return np.zeros((len(ds), 0))
        days = (ds - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy() / 86400.0
        x = 2 * np.pi * days
        columns = []
        for i in range(WEEKLY_ORDER):
            c = (i + 1) / WEEKLY_PERIOD * x
            columns += [np.sin(c), np.cos(c)]
        return np.column_stack(columns)
