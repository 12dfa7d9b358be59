//! The `quiver` command line.

use std::process::ExitCode;

/// Compiling a plan allocates per declared node, and a run per node and per
/// batch on every thread: with mimalloc's thread-local free lists,
/// `quiver validate` of the VN30 plan for 400 symbols × 50 days (125k
/// declared nodes) takes 1.2 s instead of 2.5 s with glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Arenas committed as they are used, not up front: committed up front, a
/// 30-symbol run was resident at 330 MiB instead of 146 MiB, and the VN30
/// backfill ran slower. Freed memory kept for reuse rather than given back
/// to the system 10 ms later: a run frees and allocates batches all the
/// time, and giving them back and faulting them in again cost the VN30 run
/// of 400 symbols × 250 days 6 s of system time, at the same peak resident
/// memory. Set before `main`, whose runtime allocates (and so reserves
/// mimalloc's first arena) before the first line of `main` runs.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_AS_USED: extern "C" fn() = commit_arenas_as_used;

#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_as_used() {
    /// `mi_option_arena_eager_commit` in mimalloc 2's `mimalloc.h`; the
    /// Rust bindings do not name it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    /// `mi_option_purge_delay`: milliseconds before freed memory is given
    /// back; -1 never.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 16;
    // SAFETY: setting an option has no preconditions; both are read when
    // memory is reserved or freed.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}

fn main() -> ExitCode {
    quiver::cli::main(std::env::args_os())
}
