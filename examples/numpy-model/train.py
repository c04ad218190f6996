"""Fit the model on made-up house prices and pickle it to model.pkl, which job.py loads."""

import pickle

import numpy as np
from model import LinearRegression

# price = 3 * area + 10 * rooms + 50, plus a little noise; a fixed seed makes model.pkl reproducible.
rng = np.random.default_rng(7)
X = rng.uniform([30, 1], [200, 6], size=(200, 2))
y = X @ np.array([3.0, 10.0]) + 50 + rng.normal(0, 0.5, size=200)

model = LinearRegression().fit(X, y)
with open('model.pkl', 'wb') as file:
    pickle.dump(model, file)
print(f'model.pkl written: coef={model.coef_.round(3).tolist()} intercept={model.intercept_:.3f}')
