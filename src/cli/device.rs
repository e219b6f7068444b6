//! Parsing of the global `--device` and `--dtype` options.

use std::str::FromStr;

use anyhow::{Result, bail};
use candle_core::{DType, Device};

/// A compute device as written on the command line: `cpu`, `cuda:N` or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    /// The first GPU when this build has CUDA and one opens, else the CPU (what a job
    /// script wants on a cluster whose nodes may or may not have a GPU).
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => bail!("unknown device {s:?}: use cpu, cuda:N or auto"),
            },
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceArg {
    /// Opens the device, with a clear error when this build has no CUDA support.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if candle_core::utils::cuda_is_available() => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!("--device cuda:{n}: this stipple was built without CUDA (rebuild with `--features cuda`)");
                }
                // the first line: candle appends a backtrace when RUST_BACKTRACE is set
                Device::new_cuda(n).map_err(|e| anyhow::anyhow!("--device cuda:{n}: {}", cuda_problem(e.to_string().lines().next().unwrap_or_default())))
            }
        }
    }
}

/// What a CUDA start-up error means for the user.
fn cuda_problem(err: &str) -> String {
    let why = if err.contains("STUB_LIBRARY") || err.contains("NO_DEVICE") || err.contains("libcuda") {
        "no NVIDIA driver or GPU on this machine"
    } else if err.contains("INSUFFICIENT_DRIVER") || err.contains("UNSUPPORTED_PTX_VERSION") {
        "the NVIDIA driver is older than the CUDA 13.0 this stipple was built for (update the driver)"
    } else if err.contains("INVALID_DEVICE") {
        "no GPU with that number (nvidia-smi lists them)"
    } else {
        "the GPU could not be opened"
    };
    format!("{why} ({err})")
}

/// A floating-point type as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DTypeArg(pub DType);

impl FromStr for DTypeArg {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(Self(match s {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            other => bail!("unknown dtype {other:?}: use f32, f16 or bf16"),
        }))
    }
}

impl std::fmt::Display for DTypeArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            _ => "f32",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes() {
        assert_eq!("cpu".parse::<DeviceArg>().unwrap(), DeviceArg::Cpu);
        assert_eq!("cuda:1".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(1));
        assert!("gpu".parse::<DeviceArg>().is_err());
        assert!("cuda:x".parse::<DeviceArg>().is_err());
        assert_eq!("bf16".parse::<DTypeArg>().unwrap().0, DType::BF16);
        assert!("f64".parse::<DTypeArg>().is_err());
        for s in ["cpu", "cuda:1", "auto"] {
            assert_eq!(s.parse::<DeviceArg>().unwrap().to_string(), s);
        }
        // without CUDA in the build, auto is the CPU
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(DeviceArg::Auto.open().unwrap(), Device::Cpu));
        for s in ["f32", "f16", "bf16"] {
            assert_eq!(s.parse::<DTypeArg>().unwrap().to_string(), s);
        }
    }
}
