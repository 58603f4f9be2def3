"""Reads audit records as the store holds them (the compact form of coffer-audit's
`stored` module, or the JSON form earlier builds wrote), for tests that inspect or tamper
with the trail in the database. `as_json` gives the JSON form, which every reader still
accepts, so a test edits an event as text and writes it back."""
from __future__ import annotations

import json
from pathlib import Path

import zstandard

TAG = 0xC1
_DICT_DIR = Path(__file__).resolve().parents[2] / "crates/coffer-audit/src/dict"
# Dictionary 1 is raw content; dictionary 2 is a full zstd dictionary (the same content
# with entropy tables).
DICTS = {1: (_DICT_DIR / "events-1.jsonl", zstandard.DICT_TYPE_RAWCONTENT),
         2: (_DICT_DIR / "events-2.zdict", zstandard.DICT_TYPE_FULLDICT)}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        b = data[at]
        at += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, at


def decode(value: bytes) -> dict:
    """The record (`v`, `seq`, `timeMs`, `prevHash`, `hash`, `event`) of stored bytes."""
    if value[:1] != bytes([TAG]):
        return json.loads(value)
    dict_id, v = value[1], value[2]
    seq, at = _varint(value, 3)
    zigzag, at = _varint(value, at)
    time_ms = (zigzag >> 1) ^ -(zigzag & 1)
    prev_hash, hash_ = value[at:at + 32].hex(), value[at + 32:at + 64].hex()
    path, dict_type = DICTS[dict_id]
    zdict = zstandard.ZstdCompressionDict(path.read_bytes(), dict_type=dict_type)
    event = json.loads(zstandard.ZstdDecompressor(dict_data=zdict).decompress(value[at + 64:]))
    record = {"seq": seq, "timeMs": time_ms, "prevHash": prev_hash, "hash": hash_, "event": event}
    if v != 1:
        record = {"v": v, **record}
    return record


def as_json(value: bytes) -> bytes:
    """The JSON form of a stored record (what earlier builds stored)."""
    return json.dumps(decode(value), separators=(",", ":"), ensure_ascii=False).encode()
