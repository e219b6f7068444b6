//! The `stipple` command-line tool: the allocator set-up and the entry point; the
//! commands live in [`cli`].

use std::process::ExitCode;

mod cli;

/// mimalloc, counted: the peak of a run can be compared with its memory estimate
/// (`STIPPLE_MEMORY_REPORT=1` prints it on exit).
#[global_allocator]
static GLOBAL: stipple_core::memory::Counting<mimalloc::MiMalloc> = stipple_core::memory::Counting::new(mimalloc::MiMalloc);

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

/// Resident bytes per byte of short-lived tensors at the peak with this allocator set-up
/// (freed pages kept for reuse): measured on the embedded models' runs, see
/// `docs/robustness.md`.
const ALLOCATOR_FACTOR: f64 = 2.0;

fn main() -> ExitCode {
    tune_allocator();
    stipple_core::memory::set_allocator_factor(ALLOCATOR_FACTOR);
    let cli = <cli::Cli as clap::Parser>::parse();
    let result = cli::run(&cli);
    if std::env::var_os("STIPPLE_MEMORY_REPORT").is_some() {
        use stipple_core::memory;
        let peak = memory::peak_resident().unwrap_or(0);
        let predicted = memory::predicted_peak();
        eprintln!(
            "memory: predicted peak {predicted} bytes, measured peak resident {peak} bytes ({:+.1}%), peak allocated {} bytes",
            (predicted as f64 / peak.max(1) as f64 - 1.0) * 100.0,
            GLOBAL.peak()
        );
    }
    match result {
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
