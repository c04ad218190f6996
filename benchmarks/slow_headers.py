"""A slow-header flood (slowloris, as `slowhttptest -H` sends it) with ordinary clients beside it.

The flood opens `connections` connections from one address, each sending a request line and
then one more header line every `interval` seconds, never ending its head. With `reconnect`,
every connection the server closes is opened again at once, as a client that reconnects as
fast as it is cut off. Meanwhile an ordinary client sends `POST /api/v1/perform` on a new
connection `rate` times a second; what counts is how many of its calls get their 200.
"""

import asyncio
import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 10.0


@dataclass
class FloodResult:
    """What the ordinary client got, and what the flood did."""

    calls: int = 0
    ok: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 answers by status
    errors: dict[str, int] = field(default_factory=dict)  # no answer, by exception type
    latencies: list[float] = field(default_factory=list)
    flood_opened: int = 0
    flood_closed_by_server: int = 0
    flood_refused: int = 0  # connect() failed

    def summary(self) -> str:
        """One line: successes of the ordinary client, latency, what the flood saw."""
        failures = {**{str(code): n for code, n in self.statuses.items()}, **self.errors}
        p50 = statistics.median(self.latencies) * 1000 if self.latencies else float('nan')
        p99 = _percentile(self.latencies, 0.99) * 1000 if self.latencies else float('nan')
        return (
            f'ordinary calls {self.ok}/{self.calls} answered 200 (failures {failures or "none"}); '
            f'p50 {p50:.0f} ms, p99 {p99:.0f} ms; flood connections opened {self.flood_opened}, '
            f'closed by the server {self.flood_closed_by_server}, refused {self.flood_refused}'
        )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _slow_connection(port: int, interval: float, stop_at: float, result: FloodResult) -> bool:
    """One flood connection until `stop_at`; True when the server closed it first."""
    try:
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
    except OSError:
        result.flood_refused += 1
        await asyncio.sleep(0.05)
        return False
    result.flood_opened += 1
    try:
        writer.write(f'POST /api/v1/perform HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'.encode())
        line = 0
        while time.monotonic() < stop_at:
            try:
                # Anything the server sends (a 408, a 503) or its close ends the connection's head.
                data = await asyncio.wait_for(reader.read(4096), min(interval, max(0.0, stop_at - time.monotonic())))
            except TimeoutError:
                line += 1
                writer.write(f'X-Slow-{line}: {"a" * 16}\r\n'.encode())
                await writer.drain()
                continue
            if not data or b'HTTP/1.' in data:
                result.flood_closed_by_server += 1
                return True
        return False
    except OSError:
        result.flood_closed_by_server += 1
        return True
    finally:
        writer.close()


async def _flood(port: int, connections: int, interval: float, reconnect: bool, stop_at: float, result: FloodResult):
    async def keep_one() -> None:
        while time.monotonic() < stop_at:
            await _slow_connection(port, interval, stop_at, result)
            if not reconnect:
                return

    await asyncio.gather(*(keep_one() for _ in range(connections)))


def _ordinary_calls(port: int, rate: float, stop_at: float, result: FloodResult) -> None:
    body = json.dumps({'a': 1, 'b': 2}).encode()
    next_call = time.monotonic()
    while next_call < stop_at:
        time.sleep(max(0.0, next_call - time.monotonic()))
        next_call += 1 / rate
        result.calls += 1
        started = time.monotonic()
        connection = http.client.HTTPConnection('127.0.0.1', port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request('POST', '/api/v1/perform', body, {'Content-Type': 'application/json'})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                result.ok += 1
                result.latencies.append(time.monotonic() - started)
            else:
                result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
        except OSError as e:
            name = type(e).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
        finally:
            connection.close()


def run_flood(
    port: int,
    connections: int = 1200,
    duration: float = 40.0,
    interval: float = 10.0,
    rate: float = 4.0,
    reconnect: bool = False,
    warmup: float = 3.0,
) -> FloodResult:
    """Flood `port` for `warmup + duration` seconds; the ordinary client calls during the last `duration`."""
    result = FloodResult()
    stop_at = time.monotonic() + warmup + duration
    flood = threading.Thread(
        target=asyncio.run, args=(_flood(port, connections, interval, reconnect, stop_at, result),), daemon=True
    )
    flood.start()
    time.sleep(warmup)  # the flood has opened its connections
    _ordinary_calls(port, rate, stop_at, result)
    flood.join(interval + REQUEST_TIMEOUT)
    return result
