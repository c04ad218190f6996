"""Importing a job file or module and finding its entrypoint class."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType

logger = logging.getLogger(__name__)

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class JobLoadError(Exception):
    """The job reference cannot be resolved to a class; the message says what was found instead."""


def load_job_class(reference: str, class_name: str | None = None) -> type:
    """Resolve `file.py[:Class]` or `package.module[:Class]` to the job class.

    The job file's directory and the working directory become importable, so a job can
    `from job import Job` or `from supersmart.model import is_prime`.
    """
    target, _, named = reference.partition(':')
    class_name = class_name or named or None
    logger.info('loading the job: importing %s', target)
    module = _import(target)
    if class_name:
        job_class = getattr(module, class_name, None)
        if not inspect.isclass(job_class):
            raise JobLoadError(f'{target} has no class {class_name!r}; classes there: {_names(_classes(module))}')
        return job_class
    classes = _classes(module)
    if len(classes) == 1:
        return classes[0]
    with_perform = [cls for cls in classes if callable(getattr(cls, 'perform', None))]
    if len(with_perform) == 1:
        return with_perform[0]
    if not classes:
        raise JobLoadError(f'{target} defines no class; name one with {target}:ClassName')
    raise JobLoadError(f'{target} defines several classes ({_names(classes)}); name one with {target}:ClassName')


def is_file_reference(target: str) -> bool:
    """Whether a job reference's target (before `:`) names a file (`job.py`, `dir/job`) rather than a module."""
    return target.endswith('.py') or os.sep in target or '/' in target


def _import(target: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if is_file_reference(target):
        path = Path(target).resolve()
        if not path.is_file():
            raise JobLoadError(f'job file {target} does not exist (working directory: {cwd})')
        directory = str(path.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise JobLoadError(f'cannot import {target}')
        module = importlib.util.module_from_spec(spec)
        # Registered before running, so the job's own `from job import ...` and pickling find it.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(target)


def _classes(module: ModuleType) -> list[type]:
    return [value for value in vars(module).values() if inspect.isclass(value) and value.__module__ == module.__name__]


def _names(classes: list[type]) -> str:
    return ', '.join(cls.__name__ for cls in classes) or 'none'


def describe_failure(error: BaseException) -> str:
    """`Type: message, cause=RootType (at file:line)`, pointing at the job's own code where it was raised.

    `cause=` names the first exception of the `raise ... from` chain, in the existing
    implementation's words, so alerts written against its `/live` keep matching.
    """
    chain = [error]
    while (cause := chain[-1].__cause__) is not None:
        chain.append(cause)
    root = chain[-1]
    location = ''
    if isinstance(root, SyntaxError) and root.filename:
        location = f'{_shown(root.filename)}:{root.lineno}'
    else:
        # The deepest exception was raised where the job went wrong; the ones wrapping it, in this library.
        frames = [_last_job_frame(link.__traceback__) for link in reversed(chain)]
        frame = next((found for found in frames if found is not None and _is_job_frame(found)), None)
        if frame is not None:
            location = f'{_shown(frame.filename)}:{frame.lineno}'
        else:
            # Found by this library, not raised by the job: where the job defines what is at fault.
            where = next((site for link in chain if (site := _definition_site(link)) is not None), None)
            frame = next((found for found in frames if found is not None), None)
            if where is not None:
                location = where
            elif frame is not None:
                location = f'{_shown(frame.filename)}:{frame.lineno}'
    message = f'{type(error).__name__}: {error}, cause={type(root).__name__}'
    return f'{message} (at {location})' if location else message


def _definition_site(error: BaseException) -> str | None:
    """`file:line` of the job code a JobDefinitionError names as `where`, if it can be found."""
    where = getattr(error, 'where', None)
    if where is None:
        return None
    target = inspect.unwrap(getattr(where, '__func__', where))
    try:
        filename = inspect.getsourcefile(target)
        _, line = inspect.getsourcelines(target)
    except (TypeError, OSError):
        return None
    return f'{_shown(filename)}:{line}' if filename else None


def _last_job_frame(tb: TracebackType | None) -> traceback.FrameSummary | None:
    frames = traceback.extract_tb(tb)
    for frame in reversed(frames):
        if _is_job_frame(frame):
            return frame
    return frames[-1] if frames else None


def _is_job_frame(frame: traceback.FrameSummary) -> bool:
    return not frame.filename.startswith(_PACKAGE_DIR) and not frame.filename.startswith('<frozen')


def _shown(filename: str) -> str:
    """A file's path as `/live` shows it: relative to the working directory (the job's) when inside it.

    The probe answers anyone who can reach it; the layout of the machine is not theirs to read.
    """
    relative = os.path.relpath(filename)
    return filename if relative.startswith('..') else relative
