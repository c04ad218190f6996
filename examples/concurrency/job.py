import time


class SlowModel:
    """A model that can serve one prediction at a time (say, it holds the only GPU)"""

    def perform(self, text: str, seconds: float = 0.5) -> str:
        """Think for `seconds` (at most 5), then answer in capitals"""
        time.sleep(min(max(seconds, 0.0), 5.0))
        return text.upper()

    def docs_input_example(self) -> dict:
        return {'text': 'hello', 'seconds': 0.5}
