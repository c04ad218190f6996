"""A text generator whose answer streams token by token, as language models answer."""

import time
from collections.abc import Iterator


class Job:
    def perform(self, prompt: str = 'hello', tokens: int = 8, delay: float = 0.2) -> Iterator[str]:
        """Answer the prompt one token at a time.

        :param prompt: words to answer with
        :param tokens: how many tokens to produce
        :param delay: seconds each token takes, as a model's next token would
        """
        words = prompt.split() or ['...']
        for index in range(tokens):
            time.sleep(delay)
            yield words[index % len(words)]

    def docs_input_example(self) -> dict:
        return {'prompt': 'the quick brown fox', 'tokens': 4, 'delay': 0.2}

    def static_endpoints(self) -> dict:
        # A page that reads the stream as Server-Sent Events, token by token.
        return {'/page': 'page.html'}
