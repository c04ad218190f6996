import logging

from racetrack_job_wrapper.call import call_job

logger = logging.getLogger(__name__)


class Job:
    def perform(self, numbers: list[float]) -> float:
        """Average numbers, asking the adder job for their sum (a chain call through PUB_URL)"""
        if not numbers:
            raise ValueError('numbers must not be empty')
        total = call_job(self, 'adder', payload={'numbers': numbers})
        logger.info('the adder says %s', total)
        return total / len(numbers)
