"""A numpy model pickled by train.py, loaded from the working directory when the job starts."""

import pickle
from pathlib import Path

import numpy as np

# Relative to the working directory, as the job's files are in a Racetrack image.
MODEL_PATH = Path('model.pkl')


class Job:
    def __init__(self):
        if not MODEL_PATH.is_file():
            raise FileNotFoundError(f'{MODEL_PATH} not found in {Path.cwd()}: run `python train.py` there first')
        # Unpickling runs code: load only files the job itself made. model.LinearRegression must be
        # importable here, as when it was pickled; the job file's directory is on sys.path.
        with MODEL_PATH.open('rb') as file:
            self.model = pickle.load(file)

    def perform(self, houses: list[tuple[float, float]]) -> list[float]:
        """
        Predict house prices.
        :param houses: One [area in m2, rooms] pair per house.
        :return: One price per house, in thousands.
        """
        # reshape: an empty list is a 0 x 2 matrix too, so it predicts no prices instead of failing.
        prices = self.model.predict(np.array(houses, dtype=float).reshape(-1, 2))
        # The server turns a numpy array (and numpy scalars) into JSON as it is.
        return prices.round(2)

    def docs_input_example(self) -> dict:
        return {'houses': [[100, 3], [55.5, 2]]}
