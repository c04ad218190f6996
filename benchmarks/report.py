"""Collected samples and the markdown table built from them."""

import statistics
from dataclasses import dataclass, field

SIDES = ('project', 'peer', 'floor')


@dataclass(frozen=True)
class Figure:
    """One row of the table: what is measured, its unit, and which direction is better."""

    key: str
    label: str
    unit: str
    better: str  # 'higher' or 'lower'
    digits: int = 1


@dataclass
class Results:
    """Samples per (figure, side), plus the reason a cell has none."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, side: str, value: float) -> None:
        """Record one sample."""
        self.samples.setdefault((key, side), []).append(value)

    def fail(self, key: str, side: str, reason: str) -> None:
        """Record why a sample is missing; the first reason per cell is kept."""
        self.errors.setdefault((key, side), reason)

    def median(self, key: str, side: str) -> float | None:
        """Return the median of the cell's samples, or None when it has none."""
        values = self.samples.get((key, side))
        return statistics.median(values) if values else None


def _number(value: float, digits: int) -> str:
    return f'{value:,.{digits}f}'


def _cell(results: Results, figure: Figure, side: str, rounds: int) -> str:
    values = results.samples.get((figure.key, side))
    if not values:
        return 'error' if (figure.key, side) in results.errors else 'n/a'
    text = _number(statistics.median(values), figure.digits)
    if len(values) > 1:
        text += f' ({_number(min(values), figure.digits)}..{_number(max(values), figure.digits)})'
    if len(values) < rounds and (figure.key, side) in results.errors:
        text += f' [{len(values)}/{rounds} rounds]'
    return text


def _ratio(results: Results, key: str, other: str) -> str:
    mine, theirs = results.median(key, 'project'), results.median(key, other)
    if mine is None or theirs is None or theirs == 0:
        return '-'
    return f'{mine / theirs:.2f}x'


def render_table(results: Results, figures: list[Figure], header: list[str], rounds: int) -> str:
    """Return the markdown report: header lines, the table, then notes and error reasons."""
    lines = [
        *header,
        '',
        '| figure | unit | better | project | peer | floor | project/peer | project/floor |',
        '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |',
    ]
    for figure in figures:
        cells = [_cell(results, figure, side, rounds) for side in SIDES]
        lines.append(
            f'| {figure.label} | {figure.unit} | {figure.better} | '
            + ' | '.join(cells)
            + f' | {_ratio(results, figure.key, "peer")}'
            + f' | {_ratio(results, figure.key, "floor")} |'
        )
    lines.append('')
    lines.append('Cells: median of rounds (min..max). Ratios: median / median.')
    for note in results.notes:
        lines.append(f'- {note}')
    labels = {f.key: f.label for f in figures}
    grouped: dict[tuple[str, str], list[str]] = {}
    for (key, side), reason in results.errors.items():
        grouped.setdefault((side, reason), []).append(labels.get(key, key))
    for (side, reason), where in grouped.items():
        scope = ', '.join(where) if len(where) <= 4 else f'{len(where)} figures'
        lines.append(f'- error, {side} ({scope}): {reason[:300]}')
    return '\n'.join(lines) + '\n'
