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
/// backfill ran slower. Set before `main`, whose runtime allocates (and so
/// reserves mimalloc's first arena) before the first line of `main` runs.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_AS_USED: extern "C" fn() = commit_arenas_as_used;

#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_as_used() {
    /// `mi_option_arena_eager_commit` in mimalloc 2's `mimalloc.h`; the
    /// Rust bindings do not name it.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: setting an option has no preconditions; it is read when an
    // arena is reserved.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}

fn main() -> ExitCode {
    quiver::cli::main(std::env::args_os())
}
