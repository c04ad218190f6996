"""A text scorer that serves concurrent calls in batches: one matrix product for the whole batch."""

from typing import Any

import numpy

FEATURES = 256


class Job:
    def __init__(self) -> None:
        self.weights = numpy.random.default_rng(7).standard_normal(FEATURES) / 8

    def perform(self, text: str) -> float:
        """The score of one text, between 0 and 1.

        Args:
            text: the text to score
        """
        (score,) = self.perform_batch([{'text': text}])  # when batching is off: a batch of one
        if isinstance(score, Exception):
            raise score
        return score

    def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
        """The scores of every call in the batch, in order; an empty text fails its own call only."""
        texts = [call['text'] for call in calls]
        features = numpy.zeros((len(texts), FEATURES))
        for row, text in enumerate(texts):
            codes = numpy.frombuffer(text.lower().encode(), dtype=numpy.uint8).astype(int)
            features[row] = numpy.bincount(codes % FEATURES, minlength=FEATURES) / max(1, len(codes))
        scores = 1 / (1 + numpy.exp(-(features @ self.weights) * 16))  # one product for the whole batch
        return [
            round(float(score), 4) if text else ValueError('text is empty')
            for text, score in zip(texts, scores, strict=True)
        ]

    def docs_input_example(self) -> dict[str, Any]:
        return {'text': 'a fine day for a batch'}
