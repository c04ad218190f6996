"""The user guide's `supersmart` job: existing code in a package, wrapped by an entrypoint class."""

from supersmart.model import is_prime

from racetrack_job_wrapper.entrypoint import JobEntrypoint


class PrimeEntrypoint(JobEntrypoint):
    # Subclassing JobEntrypoint is optional; its defaults count as methods the job does not have.

    def perform(self, number: int) -> bool:
        """
        Check if a number is prime.
        :param number: The integer number to check.
        :return: Boolean whether the number is prime.
        """
        return is_prime(number)

    def docs_input_example(self) -> dict:
        return {'number': 7907}
