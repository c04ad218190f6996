"""`Quantity`: a Kubernetes-style quantity such as `128Mi`, `0.5G` or `100m`, compared by its plain value."""

from __future__ import annotations

import functools
import re
from typing import Any

# Float factors, so plain values (and thus comparisons) come out bit for bit as racetrack-job-runner's.
_MULTIPLIERS: dict[str, float] = {
    'E': 1e18,
    'P': 1e15,
    'T': 1e12,
    'G': 1e9,
    'M': 1e6,
    'k': 1e3,
    '': 1,
    'm': 1e-3,
    'u': 1e-6,
    'n': 1e-9,
    'p': 1e-12,
    'Ei': 1024**6,
    'Pi': 1024**5,
    'Ti': 1024**4,
    'Gi': 1024**3,
    'Mi': 1024**2,
    'Ki': 1024,
}
# Unsigned digits (any Unicode decimal digits, as float() reads them) with an optional fraction,
# then the suffix; no exponent, sign or spaces.
_FORMAT = re.compile(r'(?P<number>\d+(?:\.\d+)?)(?P<suffix>.*)')


@functools.total_ordering
class Quantity:
    """A fixed-point number with an optional SI (`k`, `M`, `m` ...) or binary (`Ki`, `Mi` ...) suffix.

    Equality and ordering compare `plain_number`; `str()`, `repr()` and the JSON form are the
    string it was made from. Instances are not hashable, as in racetrack-job-runner.
    """

    def __init__(self, quantity_str: str):
        """Parse `quantity_str` (`128974848`, `129M`, `123Mi`, `0.129G`); raises ValueError if malformed."""
        if not isinstance(quantity_str, str):
            raise TypeError(f'a quantity is a string like "128Mi", got {type(quantity_str).__name__}')
        found = _FORMAT.fullmatch(quantity_str)
        if found is None:
            raise ValueError(
                f'invalid quantity format: {quantity_str}, expected "<number><suffix>" '
                'with an unsigned number, e.g. 128Mi or 0.5'
            )
        suffix = found.group('suffix')
        if suffix not in _MULTIPLIERS:
            raise ValueError(
                f'invalid quantity suffix: {suffix} in {quantity_str}, expected one of '
                + ', '.join(repr(known) for known in _MULTIPLIERS)
            )
        self.quantity_str = quantity_str
        self.base_number = float(found.group('number'))
        self.suffix = suffix

    @property
    def plain_number(self) -> float:
        """The value without a suffix: `Quantity('2Ki').plain_number == 2048.0`."""
        return self.base_number * _MULTIPLIERS[self.suffix]

    def __str__(self) -> str:
        return self.quantity_str

    def __repr__(self) -> str:
        return self.quantity_str

    def __to_json__(self) -> str:
        """The JSON form: the original string."""
        return self.quantity_str

    def __bool__(self) -> bool:
        return self.base_number > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.plain_number == other.plain_number

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.plain_number < other.plain_number

    def __truediv__(self, divisor: Any) -> Quantity:
        """The number divided, the suffix kept: `Quantity('128Mi') / 2` is `64Mi`, `/ 3` is `42.666666666666664Mi`.

        Raises NotImplementedError for anything but an int or float, ValueError when the
        quotient cannot be written as a quantity (negative, or in exponent notation).
        """
        if not isinstance(divisor, (int, float)):
            raise NotImplementedError(f'a quantity divides by a number only, not by {type(divisor).__name__}')
        quotient = self.base_number / divisor
        number = int(quotient) if quotient.is_integer() else quotient
        return Quantity(f'{number}{self.suffix}')
