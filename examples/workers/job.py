"""A CPU-bound job for `--workers`: each worker process holds its own GIL, so N workers use N cores."""

import os


class Job:
    def perform(self, n: int = 1_000_000) -> dict:
        """Count the primes below n with a sieve in pure Python, and say which worker process did it"""
        if n > 10_000_000:
            raise ValueError('n must be at most 10,000,000')  # the sieve holds n bytes
        sieve = bytearray([1]) * max(n, 2)
        sieve[0:2] = b'\x00\x00'
        for i in range(2, int(n**0.5) + 1):
            if sieve[i]:
                sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
        return {'primes': sum(sieve[:n]), 'pid': os.getpid()}

    def docs_input_example(self) -> dict:
        return {'n': 1_000_000}
