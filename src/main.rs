//! The `ers-bridge` binary: a thin shell over [`ers_bridge::cli`], plus the one process-wide
//! setting a library must not make: how glibc's allocator returns memory.

fn main() -> std::process::ExitCode {
    limit_heap_growth();
    ers_bridge::cli::main()
}

/// Allocations of 128 KiB or more (worklist bodies, batched store statements) get their
/// own mapping, returned to the system when freed, instead of glibc's default, whose
/// threshold rises after the first large free until such blocks stay in the heap; and
/// free memory above 128 KiB at the top of a heap is given back. Together about 5 MB of
/// peak RSS on a 10,000-referral backlog (issue 20, BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_heap_growth() {
    // SAFETY: mallopt only changes allocator parameters; it is called once, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_heap_growth() {}
