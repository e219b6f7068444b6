//! Reading safetensors weights straight into the tensors' own buffers.
//!
//! candle's memory-mapped loader maps every file, then copies each tensor out of the map:
//! at the end of loading the process holds the mapped file pages *and* the copies, about
//! twice the weights (candle's CPU tensors own their memory, so the map cannot be used in
//! place). Here only the headers are parsed up front; each tensor is then read with one
//! positioned read into a buffer of its own element type, which becomes the tensor (a
//! dtype conversion, when one is asked for, costs one tensor's worth of extra memory for a
//! moment). Peak memory is the weights plus the largest tensor, and the page cache, which
//! the kernel can drop, is not the process's.
//!
//! The header parser also checks what an untrusted file could get wrong (sizes, offsets,
//! overlaps, element counts) before any allocation, with errors that name the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::{SimpleBackend, VarBuilder};

use crate::{Error, Result};

/// The largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// One tensor's place in its file.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    start: u64,
    len: usize,
}

/// A set of safetensors files (one, or a model's shards), opened for reading tensors by name.
pub struct SafetensorsFiles {
    files: Vec<(PathBuf, Mutex<File>)>,
    entries: HashMap<String, Entry>,
}

fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "U8" => DType::U8,
        "U32" => DType::U32,
        "I64" => DType::I64,
        _ => return None,
    })
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Weights(format!("{}: not a valid safetensors file: {what}", path.display()))
}

/// Parses and checks a header (`json`, found in a file of `file_len` bytes whose data
/// starts at `data_start`) into its entries.
fn parse_header(path: &Path, json: &[u8], data_start: u64, file_len: u64, file: usize) -> Result<Vec<(String, Entry)>> {
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).map_err(|e| bad(path, format!("header: {e}")))?;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |k: &str| info.get(k).ok_or_else(|| bad(path, format!("tensor {name} has no {k}")));
        let dtype_name = field("dtype")?.as_str().ok_or_else(|| bad(path, format!("tensor {name}: dtype is not a string")))?;
        let dtype = dtype_of(dtype_name).ok_or_else(|| bad(path, format!("tensor {name}: unsupported dtype {dtype_name}")))?;
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .ok_or_else(|| bad(path, format!("tensor {name}: shape is not a list")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(path, format!("tensor {name}: a dimension is not a non-negative integer")))?;
        let offsets = field("data_offsets")?.as_array().filter(|o| o.len() == 2).ok_or_else(|| bad(path, format!("tensor {name}: data_offsets is not [begin, end]")))?;
        let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
            return Err(bad(path, format!("tensor {name}: data_offsets are not integers")));
        };
        let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(path, format!("tensor {name}: shape {shape:?} overflows")))?;
        let bytes = elems.checked_mul(dtype.size_in_bytes()).ok_or_else(|| bad(path, format!("tensor {name}: size overflows")))?;
        if end < begin || end - begin != bytes as u64 {
            return Err(bad(path, format!("tensor {name}: {} bytes for {shape:?} {dtype_name} ({bytes} expected)", end.saturating_sub(begin))));
        }
        if data_start.checked_add(end).is_none_or(|e| e > file_len) {
            return Err(bad(path, format!("tensor {name} ends past the end of the file (truncated download?)")));
        }
        out.push((name, Entry { file, dtype, shape, start: data_start + begin, len: bytes }));
    }
    // no two tensors may share bytes
    let mut spans: Vec<(u64, u64, &str)> = out.iter().filter(|(_, e)| e.len > 0).map(|(n, e)| (e.start, e.start + e.len as u64, n.as_str())).collect();
    spans.sort_unstable();
    if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(bad(path, format!("tensors {} and {} overlap", w[0].2, w[1].2)));
    }
    Ok(out)
}

/// File-name extensions of PyTorch's pickle checkpoints.
const PICKLE_EXTENSIONS: [&str; 6] = ["bin", "ckpt", "pt", "pth", "pkl", "pickle"];

/// Whether the first bytes of a file are a pickle's (protocol 2 to 5, what `torch.save`'s
/// legacy format writes) or a zip archive's (`torch.save` since PyTorch 1.6, a pickle inside),
/// and not a safetensors header (whose JSON starts at byte 8).
fn looks_pickled(head: &[u8]) -> bool {
    let pickle = head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]);
    let zip = head.starts_with(b"PK\x03\x04");
    (pickle || zip) && head.get(8) != Some(&b'{')
}

/// The refusal of the pickle checkpoint `path`, with how to convert it.
pub fn pickle_error(path: &Path) -> Error {
    Error::Weights(format!(
        "{} is a PyTorch pickle checkpoint: stipple never unpickles files, because loading one can run any code it carries. \
         Convert it to safetensors with the tools you trust, e.g. `python -c \"import torch, safetensors.torch as s; \
         s.save_file(torch.load('IN', weights_only=True, map_location='cpu'), 'OUT.safetensors')\"` (a `state_dict` inside \
         is the tensors), diffusers' `from_single_file(...).save_pretrained(DIR)` or transformers' \
         `save_pretrained(DIR, safe_serialization=True)`; most hub repositories also ship .safetensors files",
        path.display()
    ))
}

/// Refuses a PyTorch pickle checkpoint (`.bin`, `.ckpt`, `.pt`, `.pth`, `.pkl`, or a file
/// that starts like one) with a message that says how to convert it; nothing is unpickled.
pub fn refuse_pickle(path: &Path) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if ext.is_some_and(|e| PICKLE_EXTENSIONS.contains(&e.as_str())) {
        return Err(pickle_error(path));
    }
    let mut head = [0u8; 9];
    if let Ok(mut f) = File::open(path) {
        let n = f.read(&mut head).unwrap_or(0);
        if looks_pickled(&head[..n]) {
            return Err(pickle_error(path));
        }
    }
    Ok(())
}

impl SafetensorsFiles {
    /// Opens the files and reads their headers (no tensor data yet). A pickle checkpoint
    /// is refused ([`refuse_pickle`]).
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let path = p.as_ref();
            refuse_pickle(path)?;
            let mut f = File::open(path).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
            let file_len = f.metadata().map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?.len();
            let mut n = [0u8; 8];
            f.read_exact(&mut n).map_err(|_| bad(path, "shorter than its 8-byte header length"))?;
            let n = u64::from_le_bytes(n);
            if n > MAX_HEADER || n > file_len.saturating_sub(8) {
                return Err(bad(path, format!("header length {n} does not fit in a file of {file_len} bytes (truncated download?)")));
            }
            let mut json = vec![0u8; n as usize];
            f.read_exact(&mut json).map_err(|e| bad(path, format!("header: {e}")))?;
            for (name, entry) in parse_header(path, &json, 8 + n, file_len, i)? {
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(Error::Weights(format!("tensor {name} appears in two weight files (the last: {})", path.display())));
                }
            }
            files.push((path.to_path_buf(), Mutex::new(f)));
        }
        Ok(Self { files, entries })
    }

    /// Bytes the tensors take once loaded with floats converted to `dtype` (integers keep
    /// their type): what loading adds to the process, checked before it starts.
    pub fn bytes_as(&self, dtype: DType) -> u64 {
        self.bytes_as_where(dtype, |_| true)
    }

    /// [`SafetensorsFiles::bytes_as`] of the tensors whose names pass `keep` (a checkpoint
    /// may carry tensors that are never loaded, such as EMA copies).
    pub fn bytes_as_where(&self, dtype: DType, keep: impl Fn(&str) -> bool) -> u64 {
        self.entries
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(_, e)| {
                let elems = (e.len / e.dtype.size_in_bytes().max(1)) as u64;
                elems * if e.dtype.is_float() { dtype.size_in_bytes() } else { e.dtype.size_in_bytes() } as u64
            })
            .sum()
    }

    /// Refuses to load when the tensors (as `dtype`) would not fit in memory
    /// ([`crate::memory::check`]); `what` names them in the error.
    pub fn check_fits(&self, what: &str, dtype: DType) -> Result<()> {
        crate::memory::check(&crate::memory::Estimate::new(format!("loading {what}")).kept("weights", self.bytes_as(dtype))).map(drop)
    }

    /// Whether a tensor `name` is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The stored shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Reads tensor `name` in its stored dtype, on the CPU.
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| Error::Weights(format!("no tensor {name} in the weights")))?;
        let (path, file) = &self.files[e.file];
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |err: std::io::Error| Error::Weights(format!("{}: reading {name}: {err}", path.display()));
        file.seek(SeekFrom::Start(e.start)).map_err(io)?;
        macro_rules! read_as {
            ($t:ty) => {{
                let mut v: Vec<$t> = vec![<$t>::default(); e.len / std::mem::size_of::<$t>()];
                // Safety: every bit pattern is a valid value of these plain number types,
                // and the byte view covers exactly the vector's initialised elements.
                let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), e.len) };
                file.read_exact(bytes).map_err(io)?;
                Tensor::from_vec(v, e.shape.as_slice(), &Device::Cpu)?
            }};
        }
        Ok(match e.dtype {
            DType::F32 => read_as!(f32),
            DType::F16 => read_as!(half::f16),
            DType::BF16 => read_as!(half::bf16),
            DType::F64 => read_as!(f64),
            DType::U8 => read_as!(u8),
            DType::U32 => read_as!(u32),
            DType::I64 => read_as!(i64),
            other => return Err(Error::Weights(format!("tensor {name}: unsupported dtype {other:?}"))),
        })
    }

    /// Reads tensor `name` converted to `dtype` on `device`.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let t = self.read(name)?;
        let t = if t.dtype() == dtype { t } else { t.to_dtype(dtype)? };
        Ok(t.to_device(device)?)
    }

    /// A `VarBuilder` over these files.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for SafetensorsFiles {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.load(name, dtype, dev).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape { msg: format!("shape mismatch for {name}"), expected: s, got: t.shape().clone() }.bt());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// A `VarBuilder` reading the safetensors `paths` (see [`SafetensorsFiles`]).
pub fn var_builder<P: AsRef<Path>>(paths: &[P], dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(SafetensorsFiles::open(paths)?.into_var_builder(dtype, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }

    #[test]
    fn reads_what_candle_writes_in_every_dtype_and_across_shards() {
        let dir = std::env::temp_dir().join(format!("stipple-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let b = Tensor::new(&[1.5f32, -2.25, 3.0], &Device::Cpu).unwrap();
        write(&dir.join("a.safetensors"), &[("a", a.clone()), ("a16", a.to_dtype(DType::F16).unwrap())]);
        write(&dir.join("b.safetensors"), &[("b", b.to_dtype(DType::BF16).unwrap()), ("ids", Tensor::new(&[7u32, 9], &Device::Cpu).unwrap())]);
        let files = SafetensorsFiles::open(&[dir.join("a.safetensors"), dir.join("b.safetensors")]).unwrap();
        assert_eq!(files.names().count(), 4);
        assert_eq!(files.read("a").unwrap().to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert_eq!(files.read("a16").unwrap().dtype(), DType::F16);
        assert_eq!(files.load("a16", DType::F32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        assert_eq!(files.load("b", DType::F32, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap(), vec![1.5, -2.25, 3.0]);
        assert_eq!(files.read("ids").unwrap().to_vec1::<u32>().unwrap(), vec![7, 9]);
        let vb = files.into_var_builder(DType::F32, &Device::Cpu);
        assert!(vb.get((3, 4), "a16").is_ok());
        assert!(vb.get((4, 3), "a").is_err(), "shape checked");
        assert!(vb.get(3, "missing").is_err());
        // a second file holding the same name is refused
        write(&dir.join("c.safetensors"), &[("a", b.clone())]);
        let e = SafetensorsFiles::open(&[dir.join("a.safetensors"), dir.join("c.safetensors")]).err().unwrap().to_string();
        assert!(e.contains("appears in two weight files"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("stipple-weights-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.safetensors");
        write(&good, &[("w", Tensor::ones((4, 4), DType::F32, &Device::Cpu).unwrap())]);
        let bytes = std::fs::read(&good).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
        let with_header = |h: &str, data: &[u8]| {
            let mut v = (h.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(h.as_bytes());
            v.extend_from_slice(data);
            v
        };
        let data = &bytes[8 + n..];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated download", bytes[..bytes.len() - 10].to_vec()),
            ("8-byte header length", bytes[..5].to_vec()),
            ("does not fit", { let mut v = bytes.clone(); v[..8].copy_from_slice(&u64::MAX.to_le_bytes()); v }),
            ("header", with_header("{not json", data)),
            ("expected", with_header(&header.replace("[4,4]", "[4,5]"), data)),
            ("unsupported dtype", with_header(&header.replace("F32", "F8_E9M9"), data)),
            ("overlap", with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, &[0u8; 16])),
        ];
        for (want, file) in cases {
            let path = dir.join("bad.safetensors");
            std::fs::write(&path, &file).unwrap();
            let e = SafetensorsFiles::open(&[&path]).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want) && e.contains("bad.safetensors"), "{want}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
