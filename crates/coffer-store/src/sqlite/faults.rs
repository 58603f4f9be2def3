//! Test-only fault injection (the `testing` feature): a SQLite VFS that is the default one
//! except that it fails the syncs of WAL files on demand, as a disk that reports an I/O
//! error on `fsync` would. See `docs/design/faults.md`.
//!
//! The shim opens every file through the default VFS and, for a WAL file, points the
//! file's method table at a copy of the default one whose `xSync` can fail; everything
//! else (locks, shared memory, reads and writes) is the default VFS's own code, so SQLite
//! goes down exactly the path it takes when the kernel reports the error.

use std::ffi::{CStr, c_int};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rusqlite::ffi;

/// The name the shim is registered under.
pub const VFS_NAME: &str = "coffer-faulty";
const VFS_NAME_C: &CStr = c"coffer-faulty";

/// How many of the coming WAL syncs fail (through any connection opened on the shim).
static FAIL_SYNCS: AtomicU32 = AtomicU32::new(0);
/// How many WAL syncs have failed so far.
static FAILED_SYNCS: AtomicU64 = AtomicU64::new(0);

/// The default VFS's method tables met so far, each with the copy handed out in its place.
/// Leaked: SQLite may use a table as long as the process lives.
struct Tables(Mutex<Vec<(&'static ffi::sqlite3_io_methods, &'static ffi::sqlite3_io_methods)>>);

// SAFETY: the tables are immutable once made; the raw pointers inside them are C
// function pointers and null pointers, safe to share between threads.
unsafe impl Sync for Tables {}
unsafe impl Send for Tables {}

static TABLES: Tables = Tables(Mutex::new(Vec::new()));

/// Makes the next `count` syncs of a WAL file opened through the shim fail with
/// `SQLITE_IOERR_FSYNC` (0 stops failing them).
pub fn fail_wal_syncs(count: u32) {
    FAIL_SYNCS.store(count, Ordering::SeqCst);
}

/// How many WAL syncs the shim has failed since the process started.
pub fn failed_wal_syncs() -> u64 {
    FAILED_SYNCS.load(Ordering::SeqCst)
}

/// Registers the shim (once) and returns its name, for `open_with_flags_and_vfs`.
pub fn register() -> &'static str {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long
        // as the process; the copy is leaked, so it does too, as SQLite requires.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            assert!(!default.is_null(), "SQLite has no default VFS");
            let mut shim: ffi::sqlite3_vfs = *default;
            shim.zName = VFS_NAME_C.as_ptr();
            shim.pAppData = default.cast();
            shim.pNext = std::ptr::null_mut();
            shim.xOpen = Some(shim_open);
            let shim = Box::leak(Box::new(shim));
            let rc = ffi::sqlite3_vfs_register(shim, 0);
            assert_eq!(rc, ffi::SQLITE_OK, "could not register the fault-injection VFS");
        }
    });
    VFS_NAME
}

/// Opens through the default VFS; a WAL file gets the method table whose sync can fail.
unsafe extern "C" fn shim_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `pAppData` holds the default VFS (see `register`); SQLite gives `file`
    // `szOsFile` bytes, which the copy kept from the default VFS.
    unsafe {
        let inner: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let Some(open) = (*inner).xOpen else { return ffi::SQLITE_CANTOPEN };
        let rc = open(inner, name, file, flags, out_flags);
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 && !(*file).pMethods.is_null()
        {
            (*file).pMethods = faulty_table(&*(*file).pMethods);
        }
        rc
    }
}

/// The copy of `original` whose `xSync` is [`shim_sync`], made once per table.
fn faulty_table(original: &'static ffi::sqlite3_io_methods) -> &'static ffi::sqlite3_io_methods {
    let mut tables = TABLES.0.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, copy)) = tables.iter().find(|(o, _)| std::ptr::eq(*o, original)) {
        return copy;
    }
    let mut copy = *original;
    copy.xSync = Some(shim_sync);
    let copy: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(copy));
    tables.push((original, copy));
    copy
}

/// Fails the sync if one is due to fail, else syncs through the default VFS.
unsafe extern "C" fn shim_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let due = FAIL_SYNCS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if due.is_ok() {
        FAILED_SYNCS.fetch_add(1, Ordering::SeqCst);
        return ffi::SQLITE_IOERR_FSYNC;
    }
    // SAFETY: `file` was opened by the default VFS and carries one of our copies, each
    // made from a table that is still registered.
    unsafe {
        let current: *const ffi::sqlite3_io_methods = (*file).pMethods;
        let original = {
            let tables = TABLES.0.lock().unwrap_or_else(PoisonError::into_inner);
            tables.iter().find(|(_, c)| std::ptr::eq(*c, current)).map(|(o, _)| *o)
        };
        match original.and_then(|o| o.xSync) {
            Some(sync) => sync(file, flags),
            None => ffi::SQLITE_IOERR_FSYNC,
        }
    }
}
