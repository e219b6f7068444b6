//! The `stipple` command-line tool: the allocator set-up and the entry point; the
//! commands live in [`cli`].

use std::process::ExitCode;

mod cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keep freed memory mapped: candle allocates a fresh buffer for every op, and returning
/// pages to the OS makes the kernel zero them again on the next step (measured ~20% of a
/// UNet step). `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // Safety: plain option setter of the linked mimalloc, called before other threads start.
        // mi_option_purge_delay (index 15 in mimalloc 2.x and 3.x; libmimalloc-sys lacks the name)
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
        // Large tensors (logits, activations of a training batch) are "huge" objects that
        // mimalloc maps from the OS one by one, so each costs a fresh round of page zeroing;
        // from a reserved arena they are reused instead (address space only, committed on
        // use; measured 15% of a training step).
        // Safety: mimalloc's documented reservation call, made before other threads start.
        unsafe { mi_reserve_os_memory(8 << 30, false, true) };
    }
}

unsafe extern "C" {
    /// mimalloc's `mi_reserve_os_memory` (libmimalloc-sys exposes only the arena-id variant).
    fn mi_reserve_os_memory(size: usize, commit: bool, allow_large: bool) -> std::ffi::c_int;
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
