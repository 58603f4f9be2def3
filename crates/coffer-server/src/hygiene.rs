//! Memory hygiene of the serving process (issue 19, item 5): no core dump may carry the
//! master key, unwrapped KMS key material or a secret value out of memory.

use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Turns core dumps off for this process before any key is loaded: `RLIMIT_CORE` to 0
/// (soft and hard, so nothing in the process raises it again) and `PR_SET_DUMPABLE` off,
/// which also covers a `core_pattern` that pipes dumps to a collector (such a pipe is
/// not bound by `RLIMIT_CORE`) and keeps other processes of the same user from attaching
/// with ptrace or reading `/proc/<pid>/mem`. Failures are reported, not fatal: the
/// caller logs them.
pub fn disable_core_dumps() -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(error) = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }) {
        problems.push(format!("could not set RLIMIT_CORE to 0: {error}"));
    }
    if let Err(error) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        problems.push(format!("could not clear PR_SET_DUMPABLE: {error}"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};

    #[test]
    fn after_it_the_process_can_neither_dump_core_nor_be_made_to() {
        // nextest runs each test in a process of its own, so changing it is harmless.
        assert_eq!(super::disable_core_dumps(), Vec::<String>::new());
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
    }
}
