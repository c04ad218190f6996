"""Logging from a job: plain `logging`, with the request's tracing id and caller name added by the server."""

import logging

# Records of this logger (and of any other) get tracing_id, and caller_name with LOG_CALLER_NAME=true.
logger = logging.getLogger(__name__)


class Job:
    def perform(self, name: str) -> str:
        """Greet someone, logging who asked"""
        if not name.strip():
            logger.warning('refusing an empty name')
            raise ValueError('name must not be empty')  # a ValueError is a 400 for the caller
        # Fields passed in `extra` become keys of the JSON line with LOG_STRUCTURED=true.
        logger.info('greeting %s', name, extra={'name_length': len(name)})
        return f'Hello, {name}!'

    def docs_input_example(self) -> dict:
        return {'name': 'Bob'}
