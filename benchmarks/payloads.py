"""Request bodies for the JSON-heavy cases, the same bytes on every run."""

import json

BODY_BYTES = 10 * 1024 * 1024


def records_body(size: int = BODY_BYTES) -> bytes:
    """About `size` bytes: `{"items": [...]}` of small objects (strings, numbers, a nested list)."""
    records, total = [], 0
    while total < size:
        index = len(records)
        record = {'id': index, 'name': f'item-{index}', 'score': index / 7, 'tags': ['a', 'b']}
        records.append(record)
        total += len(json.dumps(record)) + 2
    return json.dumps({'items': records}).encode()


def floats_body(size: int = BODY_BYTES) -> bytes:
    """About `size` bytes: `{"items": [...]}` of floats between -100 and 100 (a fixed pseudo-random sequence)."""
    floats, total, state = [], 0, 12345
    while total < size:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        value = (state >> 11) / 2**53 * 200 - 100
        floats.append(value)
        total += len(repr(value)) + 2
    return json.dumps({'items': floats}).encode()


def item_count(body: bytes) -> int:
    """How many items a body holds: what the counting job must answer."""
    return len(json.loads(body)['items'])
