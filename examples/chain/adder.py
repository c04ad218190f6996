import logging

logger = logging.getLogger(__name__)


class Job:
    def perform(self, numbers: list[float]) -> float:
        """Add numbers; the second job of the chain"""
        logger.info('adding %d numbers', len(numbers))
        return sum(numbers)
