import math


def is_prime(number: int) -> bool:
    """Check if a number is prime"""
    if number < 2:
        return False
    return all(number % i != 0 for i in range(2, int(math.sqrt(number)) + 1))
