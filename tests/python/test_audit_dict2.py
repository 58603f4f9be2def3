"""Compact audit records with dictionary 2 (issue 20, the SQLite writer thread): new
records name dictionary 2, and a trail whose records were written with dictionary 1, as
the builds before it wrote them, still answers the same LookupEvents, verifies, and is
continued by dictionary-2 records."""
from __future__ import annotations

import sqlite3

import zstandard

from audit_records import DICTS, _varint, decode
from test_audit_bytes import calls, every_event, rows, serve, verify


def frame_start(value: bytes) -> int:
    """Where a compact record's zstd frame starts (after tag, dict, v, two varints, two hashes)."""
    _, at = _varint(value, 3)
    _, at = _varint(value, at)
    return at + 64


def as_dictionary_1(value: bytes) -> bytes:
    """The record re-encoded as the builds before dictionary 2 stored it."""
    at = frame_start(value)
    canonical = zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(DICTS[2][0].read_bytes(),
                                                dict_type=DICTS[2][1])).decompress(value[at:])
    raw = zstandard.ZstdCompressionDict(DICTS[1][0].read_bytes(), dict_type=DICTS[1][1])
    frame = zstandard.ZstdCompressor(level=-3, dict_data=raw, write_dict_id=False,
                                     write_content_size=True).compress(canonical)
    return value[:1] + b"\x01" + value[2:at] + frame


def test_dictionary_1_records_stay_readable_and_verify_beside_dictionary_2_ones(tmp_path):
    server = serve(tmp_path)
    try:
        calls(server.url, "a")
        before = every_event(server.url)
    finally:
        server.stop()
    db = tmp_path / "coffer.db"
    stored = rows(db)
    assert len(stored) >= 10
    assert {value[:2] for _, value in stored} == {b"\xc1\x02"}, "new records name dictionary 2"

    conn = sqlite3.connect(db)
    with conn:
        for key, value in stored:
            old = as_dictionary_1(value)
            assert decode(old) == decode(value)
            conn.execute("UPDATE records SET value = ? WHERE kind = 'audit.event' AND key = ?",
                         (old, key))
    conn.close()
    assert {value[:2] for _, value in rows(db)} == {b"\xc1\x01"}
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr

    server = serve(tmp_path)
    try:
        after = every_event(server.url)
        old = [e for e in after if e["EventId"] in {b["EventId"] for b in before}]
        assert old == before
        calls(server.url, "b")
    finally:
        server.stop()
    assert {value[:2] for _, value in rows(db)} == {b"\xc1\x01", b"\xc1\x02"}
    ok = verify(tmp_path)
    assert ok.returncode == 0, ok.stderr
