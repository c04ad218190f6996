"""The user guide's static endpoints: single files with guessed or given mime types, and a whole directory."""


class Job:
    def perform(self) -> str:
        """Say where the files are."""
        return 'see /api/v1/xrai, /api/v1/manifest, /api/v1/docs/readme and /api/v1/assets/'

    def static_endpoints(self):
        """Dict of endpoint paths mapped to corresponding static files that ought be served."""
        return {
            '/xrai': 'xrai.yaml',
            '/manifest': ('job.yaml', 'application/x-yaml'),
            '/docs/readme': 'README.md',
            '/assets': 'docs',
        }
