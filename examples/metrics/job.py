import random

from prometheus_client import Counter

# A metric the job defines itself on prometheus_client's default registry: /metrics shows it too.
guesses = Counter('job_guesses', 'Numbers guessed by perform')


class Job:
    def perform(self) -> float:
        """Guess a number between 0 and 1"""
        guesses.inc()
        return random.random()

    def metrics(self):
        """Gauges read at every scrape of /metrics"""
        return [
            {
                'name': 'job_is_crazy',
                'description': 'Whether your job is crazy or not',
                'value': random.random(),
                'labels': {
                    'color': 'blue',
                },
            },
        ]
