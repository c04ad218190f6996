"""A scikit-learn-style linear regression in numpy: `fit(X, y)`, then `predict(X)`."""

import numpy as np


class LinearRegression:
    def __init__(self):
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> 'LinearRegression':
        # A column of ones fits the intercept together with the coefficients.
        design = np.column_stack([X, np.ones(len(X))])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.coef_, self.intercept_ = solution[:-1], float(solution[-1])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError('the model is not fitted')
        return X @ self.coef_ + self.intercept_
