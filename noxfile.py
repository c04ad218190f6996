"""Sessions: `nox -s tests` (3.11, 3.12, 3.13 where installed), `quick`, `lint`, `fuzz`, `bench`, `wheelhouse`,
`cluster`."""

import nox

nox.options.sessions = ['lint', 'tests']
# An interpreter this machine lacks is skipped with nox's message, in CI too: the registries we reach
# serve packages, not interpreters.
nox.options.error_on_missing_interpreters = False

PYTHONS = ['3.11', '3.12', '3.13']


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The unit and integration tests (needs chromium, prometheus and wrk from apt on the machine)."""
    session.install('-e', '.[test]')
    session.run('python', '-m', 'unittest', 'discover', '-v', *session.posargs)


@nox.session(python='3.11')
def quick(session: nox.Session) -> None:
    """The tests without the slow external-tool ones (Chromium, Prometheus, schemathesis, worker processes)."""
    session.install('-e', '.[test]')
    session.run('python', '-m', 'unittest', 'discover', *session.posargs, env={'RJW_QUICK': '1'})


@nox.session(python='3.11')
def lint(session: nox.Session) -> None:
    """ruff (lint and format) over the repository, mypy --strict over the package."""
    session.install('-e', '.[lint]')
    session.run('ruff', 'check', '.')
    session.run('ruff', 'format', '--check', '.')
    session.run('mypy')


@nox.session(python='3.11')
def fuzz(session: nox.Session) -> None:
    """Property-based HTTP fuzzing and schemathesis against the example jobs' OpenAPI documents."""
    session.install('-e', '.[test]')
    session.run('python', '-m', 'unittest', '-v', 'tests.test_fuzz_api', 'tests.test_fuzz_http', *session.posargs)


@nox.session(python='3.11')
def bench(session: nox.Session) -> None:
    """Side-by-side benchmark against the peer and the stdlib floor; writes benchmarks/results/latest.md."""
    session.run('python', 'benchmarks/bench.py', *session.posargs, external=True)


@nox.session(python='3.11')
def wheelhouse(session: nox.Session) -> None:
    """The project's wheel and its dependencies' in wheelhouse/ (or the folder given), installable with --no-index."""
    session.run('python', '.ci/wheelhouse.py', *session.posargs)


@nox.session(python='3.11')
def cluster(session: nox.Session) -> None:
    """Three replicas behind HAProxy and Prometheus, rolled one by one under load (needs haproxy, prometheus)."""
    session.install('-e', '.')
    session.run('python', '-m', 'unittest', '-v', 'tests.test_cluster', *session.posargs)
