"""Sessions: `nox -s tests`, `nox -s fuzz`, `nox -s bench`."""
import nox

nox.options.sessions = ['tests']


@nox.session(python='3.11')
def tests(session: nox.Session) -> None:
    """The unit and integration tests (needs chromium, prometheus and wrk from apt on the machine)."""
    session.install('-e', '.[test]')
    session.run('python', '-m', 'unittest', 'discover', '-v', *session.posargs)


@nox.session(python='3.11')
def fuzz(session: nox.Session) -> None:
    """Property-based HTTP fuzzing and schemathesis against the example jobs' OpenAPI documents."""
    session.install('-e', '.[test]')
    session.run('python', '-m', 'unittest', '-v', 'tests.test_fuzz_api', 'tests.test_fuzz_http', *session.posargs)


@nox.session(python='3.11')
def bench(session: nox.Session) -> None:
    """Side-by-side benchmark against the peer and the stdlib floor; writes benchmarks/results/latest.md."""
    session.run('python', 'benchmarks/bench.py', *session.posargs, external=True)
