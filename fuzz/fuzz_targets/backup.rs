//! Backup files: any bytes as a file `coffer restore` reads, through the very reader it
//! uses (crates/coffer/src/backup_format.rs, compiled here in place), with and without
//! `--allow-unauthenticated`, under a fixed master key (the one the seed files in
//! fuzz/corpus/backup were written under). Must never panic; a file that passes must
//! have announced exactly the items it held.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/coffer/src/backup_format.rs"]
mod backup_format;

use backup_format::{Check, mac_key, scan_reader};
use coffer_crypto::MasterKey;
use libfuzzer_sys::fuzz_target;

/// The master key of the seed files (32 bytes 0..31, base64).
const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fuzz_target!(|data: &[u8]| {
    let master = MasterKey::from_text(MASTER).expect("a valid master key");
    for allow_unauthenticated in [false, true] {
        let check = Check { key: mac_key(&master), allow_unauthenticated };
        let mut seen = 0u64;
        let result = scan_reader(data, "fuzz.backup", &check, &mut |_, _| {
            seen += 1;
            Ok(())
        });
        if let Ok(counts) = result {
            assert_eq!(counts.total(), seen);
        }
    }
});
