"""A model that takes a while to load: the server answers probes meanwhile, and job calls only once it is ready."""

import logging
import os
import time

logger = logging.getLogger(__name__)

# How long "reading the weights" takes; set it to 0 to skip the wait.
LOAD_SECONDS = float(os.environ.get('MODEL_LOAD_SECONDS', '10'))


class Job:
    def __init__(self):
        # The server instantiates the class in the background: until __init__ returns,
        # /live is 200, /ready and /health are 500 and /api/v1/perform is 503 with Retry-After,
        # so an orchestrator keeps the pod out of its load balancer without restarting it.
        logger.info('loading the model (%.0f s)', LOAD_SECONDS)
        time.sleep(LOAD_SECONDS)
        self.sentiments = {'good': 1, 'great': 2, 'bad': -1, 'awful': -2}
        logger.info('model loaded')

    def perform(self, text: str) -> int:
        """Sentiment of a text: the sum of its words' scores"""
        return sum(self.sentiments.get(word, 0) for word in text.lower().split())

    def docs_input_example(self) -> dict:
        return {'text': 'a great day after a bad night'}
