//! The compact form in which the store holds audit records (about a quarter of the JSON
//! form's bytes), and the reading of both forms.
//!
//! Records were stored as JSON (`{"v":2,"seq":..,"timeMs":..,"prevHash":"<hex>",
//! "hash":"<hex>","event":{..}}`), about 1 KB each. The compact form keeps the same
//! contents:
//!
//! ```text
//! TAG  dict  v  seq (LEB128)  timeMs (zigzag LEB128)  prevHash (32 bytes)  hash (32 bytes)  zstd frame
//! ```
//!
//! where the zstd frame holds the event's canonical JSON (the exact bytes the hash covers),
//! compressed with the dictionary `dict` names, embedded in the binary: 1, a raw-content
//! dictionary of typical events (`dict/events-1.jsonl`), or 2, the same content with
//! entropy tables (`dict/events-2.zdict`), which new records use. `TAG` cannot start a
//! JSON record (`{`), so every reader tells the two forms apart by the first byte and
//! reads both: stores written by earlier builds stay readable and verifiable, and a
//! chain may mix the forms. A dictionary is never
//! changed once released: a better one gets a new id and the old stays in the table.
//!
//! Decoding yields the same [`Record`] as the JSON form (the hashes as lowercase hex, the
//! event parsed from its canonical JSON), so LookupEvents, verification, archives and
//! exports see no difference, and verification recomputes the hash over the decoded event
//! exactly as before: the encoding is not trusted for integrity.

use crate::chain::{Record, hex_into};
use serde_json::Value;
use std::cell::RefCell;
use std::sync::LazyLock;

/// The first byte of a compact record (a JSON record starts with `{`).
pub const TAG: u8 = 0xC1;
/// The dictionary new records are compressed with.
const DICT_ID: u8 = 2;
/// Dictionary 1: canonical events of the common calls, as raw content. Never edit it:
/// records name it. Records written before dictionary 2 use it, and stay readable.
const DICT_1: &[u8] = include_bytes!("dict/events-1.jsonl");
/// Dictionary 2: the same content as dictionary 1, with the entropy tables (Huffman for
/// literals, FSE for the sequences' codes) of ~1,400 canonical events of a benchmark run
/// (`docs/design/audit-dictionary.md` says how it was made). With tables that cover
/// every symbol, zstd reuses them for each small frame instead of building its own
/// (`FSE_buildCTable_wksp` per frame with dictionary 1): ~2.1 µs and ~270 bytes per
/// event against ~3.1 µs and ~290 bytes with dictionary 1. Literals stay uncompressed
/// (level -3): compressing them with the dictionary's Huffman table would save ~55 bytes
/// more for ~0.3 µs, through zstd's experimental API (`ZSTD_c_literalCompressionMode`),
/// which this crate does not use. Never edit it: records name it.
const DICT_2: &[u8] = include_bytes!("dict/events-2.zdict");
/// zstd's level: -3, a fast level whose literals stay uncompressed (see `DICT_2`).
const LEVEL: i32 = -3;
/// The largest event JSON a record may decompress to (events are capped far below this):
/// a forged frame cannot make a reader allocate more.
const MAX_EVENT: usize = 4 << 20;

static ENCODER: LazyLock<zstd::dict::EncoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::EncoderDictionary::copy(DICT_2, LEVEL));
static DECODER_1: LazyLock<zstd::dict::DecoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICT_1));
static DECODER_2: LazyLock<zstd::dict::DecoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICT_2));

/// A compression context with dictionary 2 attached and the record's frame parameters
/// set, made once per thread: each frame then only resets the context's session.
fn new_cctx() -> zstd::zstd_safe::CCtx<'static> {
    let mut cctx = zstd::zstd_safe::CCtx::create();
    let setup = cctx
        .ref_cdict(ENCODER.as_cdict())
        // The record's dict byte names the dictionary: the frame need not (one byte).
        .and_then(|_| cctx.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)));
    setup.expect("zstd accepts the record's compression parameters");
    cctx
}

thread_local! {
    // One compression and one decompression context per thread, used with the
    // dictionaries prepared once per process (`refCDict`/`*_using_ddict`): preparing
    // one costs far more than compressing an event.
    static CCTX: RefCell<zstd::zstd_safe::CCtx<'static>> = RefCell::new(new_cctx());
    static DCTX: RefCell<zstd::zstd_safe::DCtx<'static>> = RefCell::new(zstd::zstd_safe::DCtx::create());
}

#[cfg(test)]
fn compress(data: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&frame(data)?);
    Some(())
}

fn decompress(dict: u8, frame: &[u8]) -> Option<Vec<u8>> {
    let ddict = match dict {
        1 => DECODER_1.as_ddict(),
        2 => DECODER_2.as_ddict(),
        _ => return None,
    };
    // Exactly one frame: zstd would read on past it (a skippable frame, an empty one),
    // and bytes no reader shows must not ride along a record that verifies.
    if zstd::zstd_safe::find_frame_compressed_size(frame).ok()? != frame.len() {
        return None;
    }
    let size = zstd::zstd_safe::get_frame_content_size(frame).ok()??;
    let size = usize::try_from(size).ok().filter(|s| *s <= MAX_EVENT)?;
    let mut out = Vec::with_capacity(size);
    let written =
        DCTX.with(|dctx| dctx.borrow_mut().decompress_using_ddict(&mut out, frame, ddict).ok())?;
    (written == size && out.len() == size).then_some(out)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

/// The 32 bytes a lowercase hex SHA-256 spells, if it is one.
fn hash_bytes(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The compact form of a record whose event is already in canonical JSON, or `None` when
/// a hash is not lowercase hex SHA-256 (only a damaged head could give one): the caller
/// then stores the JSON form, which holds any string.
pub fn encode(
    v: u8,
    seq: u64,
    time_ms: i64,
    prev_hash: &str,
    hash: &str,
    canonical: &[u8],
) -> Option<Vec<u8>> {
    encode_framed(v, seq, time_ms, prev_hash, hash, &frame(canonical)?)
}

/// The zstd frame of an event's canonical JSON: the part of its compact record that does
/// not depend on the record's place in its chain, so it can be made before the write
/// that appends the record (off SQLite's one writer thread).
pub fn frame(canonical: &[u8]) -> Option<Vec<u8>> {
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(canonical.len()));
    CCTX.with(|cctx| cctx.borrow_mut().compress2(&mut frame, canonical).ok())?;
    Some(frame)
}

/// [`encode`] with the event's [`frame`] already made.
pub fn encode_framed(
    v: u8,
    seq: u64,
    time_ms: i64,
    prev_hash: &str,
    hash: &str,
    frame: &[u8],
) -> Option<Vec<u8>> {
    let (prev, own) = (hash_bytes(prev_hash)?, hash_bytes(hash)?);
    let mut out = Vec::with_capacity(3 + 20 + 64 + frame.len());
    out.extend_from_slice(&[TAG, DICT_ID, v]);
    put_varint(&mut out, seq);
    put_varint(&mut out, ((time_ms << 1) ^ (time_ms >> 63)) as u64);
    out.extend_from_slice(&prev);
    out.extend_from_slice(&own);
    out.extend_from_slice(frame);
    Some(out)
}

/// Reads a compact record; `None` if the bytes are not one.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    let mut rest = bytes;
    let [tag, dict, v] = take(&mut rest, 3)? else { return None };
    if *tag != TAG {
        return None;
    }
    let (dict, v) = (*dict, *v);
    let seq = take_varint(&mut rest)?;
    let zigzag = take_varint(&mut rest)?;
    let time_ms = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
    let mut prev_hash = String::with_capacity(64);
    hex_into(take(&mut rest, 32)?, &mut prev_hash);
    let mut hash = String::with_capacity(64);
    hex_into(take(&mut rest, 32)?, &mut hash);
    let canonical = decompress(dict, rest)?;
    let event: Value = serde_json::from_slice(&canonical).ok()?;
    Some(Record { v, seq, time_ms, prev_hash, hash, event })
}

/// Whether `bytes` are in the compact form (else they are JSON, or not a record).
pub fn is_compact(bytes: &[u8]) -> bool {
    bytes.first() == Some(&TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip_at_the_edges() {
        for n in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut slice = out.as_slice();
            assert_eq!(take_varint(&mut slice), Some(n));
            assert!(slice.is_empty());
        }
        assert_eq!(take_varint(&mut &[0x80u8][..]), None);
        assert_eq!(take_varint(&mut &[0xffu8; 11][..]), None);
    }

    #[test]
    fn hashes_that_are_not_lowercase_hex_are_not_encoded() {
        let event = br#"{"a":1}"#;
        let good = "ab".repeat(32);
        assert!(encode(2, 1, 5, &good, &good, event).is_some());
        for bad in ["AB".repeat(32), "ab".repeat(31), "x".into(), "zz".repeat(32)] {
            assert!(encode(2, 1, 5, &bad, &good, event).is_none(), "{bad}");
            assert!(encode(2, 1, 5, &good, &bad, event).is_none(), "{bad}");
        }
    }

    #[test]
    fn fields_round_trip_including_negative_times() {
        let h = "0123456789abcdef".repeat(4);
        for (seq, time) in [(1, 0), (u64::MAX, i64::MAX), (7, -1), (8, i64::MIN)] {
            let bytes = encode(1, seq, time, crate::chain::GENESIS, &h, br#"{"x":"y"}"#).unwrap();
            let r = decode(&bytes).unwrap();
            assert_eq!((r.v, r.seq, r.time_ms), (1, seq, time));
            assert_eq!(
                (r.prev_hash.as_str(), r.hash.as_str()),
                (crate::chain::GENESIS, h.as_str())
            );
            assert_eq!(r.event, serde_json::json!({"x": "y"}));
        }
    }

    #[test]
    fn truncated_or_foreign_bytes_are_not_records() {
        let h = "ab".repeat(32);
        let bytes = encode(2, 3, 4, &h, &h, br#"{"eventID":"e"}"#).unwrap();
        assert!(decode(&bytes).is_some());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut other_dict = bytes.clone();
        other_dict[1] = 9;
        assert!(decode(&other_dict).is_none());
        assert!(decode(b"{\"seq\":1}").is_none());
    }
    /// Review 9: nothing may follow the record's one zstd frame. zstd itself reads on
    /// past a frame (skippable frames, empty frames), so without the check a record could
    /// carry bytes that no reader shows and that verification, which hashes the decoded
    /// event, never sees.
    #[test]
    fn bytes_after_the_frame_make_the_record_unreadable() {
        let h = "ab".repeat(32);
        let bytes = encode(2, 3, 4, &h, &h, br#"{"eventID":"e"}"#).unwrap();
        assert!(decode(&bytes).is_some());
        // A skippable frame (magic 0x184D2A50, little-endian length, payload).
        let mut skippable = bytes.clone();
        skippable.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        skippable.extend_from_slice(&5u32.to_le_bytes());
        skippable.extend_from_slice(b"hide!");
        assert!(decode(&skippable).is_none(), "a skippable frame rode along");
        // A second frame of nothing.
        let mut empty = bytes.clone();
        compress(b"", &mut empty).unwrap();
        assert!(decode(&empty).is_none(), "an empty second frame rode along");
        // Any stray byte.
        let mut stray = bytes.clone();
        stray.push(0);
        assert!(decode(&stray).is_none(), "a stray byte rode along");
    }
}

/// Dictionary 2 (this module's `DICT_2`) against records written before it.
#[cfg(test)]
mod dictionary_tests {
    use super::*;

    /// A GetSecretValue record as the build before dictionary 2 wrote it (dictionary 1,
    /// `seq` 4242), and its event's canonical JSON.
    const OLD_RECORD_HEX: &str = include_str!("../testdata/record-dict1.hex");
    const OLD_EVENT: &[u8] = include_bytes!("../testdata/record-dict1-event.json");

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.trim().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_record_written_with_dictionary_1_stays_readable() {
        let old = unhex(OLD_RECORD_HEX);
        assert_eq!(&old[..3], &[TAG, 1, 2], "the fixture is a dictionary-1 record");
        let r = decode(&old).expect("a dictionary-1 record decodes");
        assert_eq!((r.v, r.seq, r.time_ms), (2, 4242, 1_796_508_298_123));
        assert_eq!(r.prev_hash, "0123456789abcdef".repeat(4));
        assert_eq!(r.hash, "fedcba9876543210".repeat(4));
        assert_eq!(crate::chain::canonical_json(&r.event).as_bytes(), OLD_EVENT);
    }

    /// New records name dictionary 2, carry no dictionary id in the frame (the record's
    /// byte names it), and come out smaller than the same event with dictionary 1 (314
    /// bytes against 333).
    #[test]
    fn new_records_use_dictionary_2_and_are_smaller() {
        let old = unhex(OLD_RECORD_HEX);
        let (prev, own) = ("0123456789abcdef".repeat(4), "fedcba9876543210".repeat(4));
        let new = encode(2, 4242, 1_796_508_298_123, &prev, &own, OLD_EVENT).unwrap();
        assert_eq!(&new[..3], &[TAG, 2, 2]);
        assert!(new.len() + 15 < old.len(), "{} bytes against {}", new.len(), old.len());
        let r = decode(&new).unwrap();
        assert_eq!(crate::chain::canonical_json(&r.event).as_bytes(), OLD_EVENT);
        // The frame's header: magic, then a descriptor whose dictionary-id bits are 0.
        let frame = &new[new.len() - (new.len() - 3 - 2 - 6 - 64)..];
        assert_eq!(&frame[..4], &0xFD2F_B528u32.to_le_bytes());
        assert_eq!(frame[4] & 0b11, 0, "the frame names no dictionary");
    }
}
