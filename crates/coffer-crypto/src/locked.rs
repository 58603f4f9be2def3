//! Locked memory for key material (issue 19, memory hygiene): every [`KeyMaterial`]'s 32
//! bytes (the master key, unwrapped KMS key material, derived keys) live in pages locked
//! in RAM with `mlock`, so the kernel never writes them to swap, and marked
//! `MADV_DONTDUMP`, so no core dump holds them even where dumps are on.
//!
//! Why a pool of slots and not `mlock` per key: locks do not nest, so unlocking one key's
//! page would unlock every other key that shares it, and a syscall per key would cost
//! every envelope (each seal and open derives a key). Pages are taken from the allocator
//! one at a time, locked once, cut into 32-byte slots and never given back; a dropped key
//! is zeroized and its slot reused. The pool grows to the most keys alive at once.
//!
//! Where the system refuses (`RLIMIT_MEMLOCK` too low without `CAP_IPC_LOCK`), the page is
//! used unlocked and the first failure is kept for [`lock_failure`], which the server logs
//! at start. Key bytes never appear in that message.
//!
//! [`KeyMaterial`]: crate::KeyMaterial

use std::alloc::{Layout, alloc_zeroed};
use std::ptr::NonNull;
use std::sync::Mutex;
use zeroize::Zeroize;

/// The size of one slot: one AES-256 key.
const SLOT: usize = crate::keys::KEY_LEN;

struct Pool {
    /// Slots not in use, each the address of `SLOT` zeroed bytes in a pool page.
    free: Vec<NonNull<[u8; SLOT]>>,
    /// Pages taken, and how many of them are locked.
    pages: usize,
    locked_pages: usize,
    /// The first `mlock` failure, for the log.
    failure: Option<String>,
}

// SAFETY: the pointers are addresses of pool pages, which are never freed; whoever pops
// one owns that slot alone until it is pushed back, as with a `Box`.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> =
    Mutex::new(Pool { free: Vec::new(), pages: 0, locked_pages: 0, failure: None });

fn page_size() -> usize {
    rustix::param::page_size()
}

impl Pool {
    /// Takes one more page from the allocator, locks it and cuts it into free slots.
    fn grow(&mut self) {
        let page = page_size();
        let layout = Layout::from_size_align(page, page).expect("a page is a valid layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base) else { std::alloc::handle_alloc_error(layout) };
        // SAFETY: `base` is the start of `page` bytes this pool owns and never frees.
        match unsafe { rustix::mm::mlock(base.as_ptr().cast(), page) } {
            Ok(()) => self.locked_pages += 1,
            Err(e) => {
                if self.failure.is_none() {
                    self.failure = Some(format!(
                        "key material could not be locked in memory (mlock: {e}); the kernel may write keys to swap. Allow it with a higher RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in systemd) or CAP_IPC_LOCK"
                    ));
                }
            }
        }
        // Best effort, and only Linux knows it: keep key pages out of core dumps too.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: as above; advice does not change the memory's contents.
        let _ = unsafe {
            rustix::mm::madvise(base.as_ptr().cast(), page, rustix::mm::Advice::LinuxDontDump)
        };
        self.pages += 1;
        for i in 0..page / SLOT {
            // SAFETY: slot `i` lies inside the page.
            let slot = unsafe { base.as_ptr().add(i * SLOT) }.cast::<[u8; SLOT]>();
            self.free.push(NonNull::new(slot).expect("inside a non-null page"));
        }
    }
}

/// 32 zeroed bytes in a locked page, zeroized and handed back to the pool when dropped.
pub(crate) struct LockedKey {
    slot: NonNull<[u8; SLOT]>,
}

// SAFETY: a `LockedKey` owns its slot alone, like a `Box<[u8; 32]>`.
unsafe impl Send for LockedKey {}
// SAFETY: shared access only reads through `&self`.
unsafe impl Sync for LockedKey {}

impl LockedKey {
    pub(crate) fn new() -> LockedKey {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.free.is_empty() {
            pool.grow();
        }
        let slot = pool.free.pop().expect("the pool just grew");
        LockedKey { slot }
    }

    pub(crate) fn bytes(&self) -> &[u8; SLOT] {
        // SAFETY: the slot is valid for the pool's life (forever) and owned by `self`.
        unsafe { self.slot.as_ref() }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; SLOT] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { self.slot.as_mut() }
    }
}

impl Drop for LockedKey {
    fn drop(&mut self) {
        self.bytes_mut().zeroize();
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.free.push(self.slot);
    }
}

/// Why key material is not (all) locked in memory, if it is not: `None` once every pool
/// page is locked, or before any key exists. The message names the limit to raise; it
/// never holds key bytes.
pub fn lock_failure() -> Option<String> {
    POOL.lock().unwrap_or_else(|e| e.into_inner()).failure.clone()
}

/// (pages of the pool, pages locked), for tests and metrics.
pub fn locked_pages() -> (usize, usize) {
    let pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    (pool.pages, pool.locked_pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `VmLck` of this process, in KiB.
    fn vm_locked_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_key_lives_in_a_locked_page_and_its_slot_is_zeroed_and_reused_after_it() {
        // nextest runs each test in a process of its own: nothing else locked memory yet.
        let before = vm_locked_kib();
        let mut key = LockedKey::new();
        key.bytes_mut().copy_from_slice(&[0xA5; SLOT]);
        let (pages, locked) = locked_pages();
        assert!(pages >= 1);
        if lock_failure().is_none() {
            assert_eq!(pages, locked);
            assert!(vm_locked_kib() > before, "VmLck did not grow");
        }
        let addr = key.slot;
        drop(key);
        // SAFETY: the slot is a pool slot, valid forever; nothing owns it now.
        assert_eq!(unsafe { addr.as_ref() }, &[0u8; SLOT], "a dropped key was not zeroed");
        let again = LockedKey::new();
        assert_eq!(again.slot, addr, "the freed slot is reused first");
    }

    #[test]
    fn many_keys_take_pages_as_needed_and_each_is_its_own() {
        let n = page_size() / SLOT * 2 + 3;
        let mut keys: Vec<LockedKey> = (0..n).map(|_| LockedKey::new()).collect();
        for (i, k) in keys.iter_mut().enumerate() {
            k.bytes_mut().fill(i as u8);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.bytes(), &[i as u8; SLOT]);
        }
        assert!(locked_pages().0 >= 3);
    }
}
