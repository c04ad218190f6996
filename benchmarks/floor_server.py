"""The stdlib floor: the least a JSON-over-HTTP job server can do, for comparison only.

No routing table, metrics, logging or validation: parse the JSON body, call
`perform(**payload)`, write the JSON result. Anything a real wrapper costs above this is
the price of its features.
"""

import argparse
import importlib.util
import inspect
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def load_job_class(path: Path) -> type:
    """Import the file at `path` and return its only class that defines `perform`."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if c.__module__ == module.__name__ and 'perform' in vars(c)
    ]
    if len(classes) != 1:
        raise SystemExit(f'{path}: expected one class defining perform, found {len(classes)}')
    return classes[0]


class FloorServer(ThreadingHTTPServer):
    """Thread per connection, a deep backlog so wrk's connection burst is never refused."""

    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, address: tuple[str, int], job: object):
        super().__init__(address, FloorHandler)
        self.job = job


class FloorHandler(BaseHTTPRequestHandler):
    """POST /api/v1/perform and GET /ready, nothing else."""

    protocol_version = 'HTTP/1.1'

    def do_GET(self) -> None:
        """Answer the readiness probe."""
        if self.path == '/ready':
            self._reply(200, b'{"ready": true}')
        else:
            self._reply(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        """Call perform with the JSON body as keyword arguments."""
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        if self.path != '/api/v1/perform':
            self._reply(404, b'{"error": "not found"}')
            return
        try:
            result = self.server.job.perform(**json.loads(body))
            self._reply(200, json.dumps(result).encode())
        except Exception as exc:  # the floor still answers, so load clients can count errors
            self._reply(400 if isinstance(exc, ValueError) else 500, json.dumps({'error': str(exc)}).encode())

    def _reply(self, status: int, body: bytes) -> None:
        # Status line, headers and body go out in one sendall: no Nagle/delayed-ACK stall.
        head = (
            f'HTTP/1.1 {status} {self.responses[status][0]}\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
        )
        self.wfile.write(head.encode('latin-1') + body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay silent: the floor does no logging."""


def main() -> None:
    """Parse `JOBFILE --port P` and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('jobfile', type=Path)
    parser.add_argument('--port', type=int, default=7000)
    parser.add_argument('--host', default='127.0.0.1')
    args = parser.parse_args()
    server = FloorServer((args.host, args.port), load_job_class(args.jobfile)())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
