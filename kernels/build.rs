//! With the `cuda` feature, compiles every `cuda/*.cu` to PTX (nvcc from `NVCC`,
//! `CUDA_HOME/bin` or `PATH`; architecture `sm_$CUDA_COMPUTE_CAP`, default 90), embedded by
//! `src/cuda.rs`. `tools/cuda-toolchain.sh` sets up nvcc 13.0 without a system CUDA.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin/nvcc")))
        .unwrap_or_else(|| "nvcc".into());
    let mut sources: Vec<PathBuf> = std::fs::read_dir("cuda").expect("kernels/cuda").map(|e| e.expect("kernels/cuda entry").path()).filter(|p| p.extension().is_some_and(|e| e == "cu")).collect();
    sources.sort();
    for src in sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let ptx = out.join(src.with_extension("ptx").file_name().expect("a file name"));
        let status = Command::new(&nvcc)
            .args(["-ptx", "-O3", "-std=c++17", "--expt-relaxed-constexpr"])
            .arg(format!("-arch=sm_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("could not run {} ({e}): install a CUDA toolkit or run `eval \"$(tools/cuda-toolchain.sh)\"`", nvcc.display()));
        assert!(status.success(), "nvcc failed on {}", src.display());
    }
}
