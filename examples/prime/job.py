import math


class Job:
    def perform(self, number: int) -> bool:
        """Check if a number is prime"""
        if number < 2:
            return False
        return all(number % i != 0 for i in range(2, int(math.sqrt(number)) + 1))

    def docs_input_example(self) -> dict:
        """Return example input values for this model"""
        return {'number': 7907}
