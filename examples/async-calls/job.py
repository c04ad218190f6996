"""A slow report, made an async call: POST with `Prefer: respond-async`, then poll its status."""

import logging
import time

logger = logging.getLogger('racetrack')


class Job:
    def perform(self, pages: int = 3, seconds_per_page: float = 1.0) -> dict:
        """Render a report page by page, saying how far it has come.

        :param pages: How many pages to render.
        :param seconds_per_page: How long one page takes.
        """
        if pages < 1:
            raise ValueError('pages must be at least 1')
        request = self.request_context.get()
        for page in range(1, pages + 1):
            request.check()  # a DELETE of the call stops it here
            time.sleep(seconds_per_page)
            request.report_progress(page / pages, f'page {page} of {pages}')
            logger.info('rendered page %d of %d', page, pages)
        return {'pages': pages, 'words': pages * 250}

    def docs_input_example(self) -> dict:
        return {'pages': 2, 'seconds_per_page': 0.1}
