"""The shell commands README.md shows, for tests/test_readme.py to run as written (and to hold `.ci/run` to).

A command is a line of an indented (four spaces) block outside a ``` fence; a trailing
`# comment` is what it prints or what it is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / 'README.md'


@dataclass(frozen=True)
class Command:
    """One command line of the README, with the section it is in and its comment."""

    section: str
    text: str
    comment: str


def commands(readme: str | None = None) -> list[Command]:
    """Every command line of the README, in order."""
    text = README.read_text(encoding='utf-8') if readme is None else readme
    found: list[Command] = []
    section = ''
    fenced = False
    for line in text.splitlines():
        if line.startswith('```'):
            fenced = not fenced
        elif fenced:
            continue
        elif line.startswith('#'):
            section = line.lstrip('#').strip()
        elif line.startswith('    ') and line.strip() and not line.startswith('     '):
            command, _, comment = line.strip().partition('    # ')
            found.append(Command(section, command.strip(), comment.strip()))
    return found


def quick_start(readme: str | None = None) -> tuple[str, str]:
    """The quick start's two commands: serve the example job, and install and run the tests."""
    shown = [command.text for command in commands(readme) if command.section == 'Quick start']
    serve = next(text for text in shown if 'racetrack_job_wrapper' in text)
    test = next(text for text in shown if 'unittest' in text)
    return serve, test
