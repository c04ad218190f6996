"""Serve a plain Python job class over HTTP with the standard library."""

# Not `typing.TYPE_CHECKING`: importing the package, which every submodule import does first,
# then costs no `typing` import (10 ms) for a job that only needs a submodule.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from racetrack_job_wrapper.endpoint_config import EndpointConfig

__version__ = '0.1.0'
__all__ = ['EndpointConfig', '__version__']


def __getattr__(name: str) -> object:
    # `EndpointConfig` is imported when a job asks for it (PEP 562): importing the package then
    # costs no dataclass creation.
    if name == 'EndpointConfig':
        from racetrack_job_wrapper.endpoint_config import EndpointConfig

        return EndpointConfig
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
