"""Serve a plain Python job class over HTTP with the standard library."""

from racetrack_job_wrapper.endpoint_config import EndpointConfig

__version__ = '0.1.0'
__all__ = ['EndpointConfig', '__version__']
