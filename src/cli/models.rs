//! Loaded models kept for the next job: `stipple batch` runs many commands in one process,
//! and loading a model costs far more than one job on it. A model is loaded once per
//! (file, dtype, device, load options) and shared; when a new one would not fit in memory
//! beside those held, the held ones are dropped and the load is tried again.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use stipple_audio::Riffusion;
use stipple_image::StableDiffusion;
use stipple_image::models::taesd::TaesdDecoder;
use stipple_text::TextModel;

/// What identifies a loaded model: the same key, the same weights in the same place.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    kind: &'static str,
    source: String,
    options: String,
    device: String,
    dtype: DType,
}

/// A model held by the cache.
#[derive(Clone)]
enum Held {
    Text(Rc<TextModel>),
    Image(Rc<StableDiffusion>),
    Music(Rc<Riffusion>),
}

/// The models loaded so far in this process, with how many loads they saved.
#[derive(Default)]
pub struct ModelCache {
    held: RefCell<Vec<(Key, Held)>>,
    loads: std::cell::Cell<usize>,
    devices: RefCell<Vec<(super::device::DeviceArg, Device)>>,
}

impl ModelCache {
    /// The device `arg` names, opened once: a GPU opened twice is two devices to candle,
    /// and a model held from one job would not run on the next job's tensors.
    pub fn device(&self, arg: super::device::DeviceArg) -> Result<Device> {
        if let Some((_, d)) = self.devices.borrow().iter().find(|(a, _)| *a == arg) {
            return Ok(d.clone());
        }
        let device = arg.open()?;
        self.devices.borrow_mut().push((arg, device.clone()));
        Ok(device)
    }

    /// Models loaded from disk so far (a reused one does not count).
    pub fn loads(&self) -> usize {
        self.loads.get()
    }

    /// A text model (folder, hub id or GGUF), quantized as it loads when asked.
    pub fn text(&self, source: &str, device: &Device, dtype: DType, quantize: Option<GgmlDType>) -> Result<Rc<TextModel>> {
        let key = key("text", source, format!("{quantize:?}"), device, dtype);
        self.get_or_load(
            key,
            |h| match h {
                Held::Text(m) => Some(m.clone()),
                _ => None,
            },
            |m| Held::Text(m),
            || TextModel::load_quantized(source, device, dtype, quantize).with_context(|| format!("loading {source}")),
        )
    }

    /// An image pipeline (folder, hub id or single file), with TAESD decoding the final
    /// images when `taesd_decode` is given.
    pub fn image(&self, model: &Path, config: Option<&Path>, taesd_decode: Option<&Path>, device: &Device, dtype: DType) -> Result<Rc<StableDiffusion>> {
        let key = key("image", &model.display().to_string(), format!("{config:?} {taesd_decode:?}"), device, dtype);
        self.get_or_load(
            key,
            |h| match h {
                Held::Image(m) => Some(m.clone()),
                _ => None,
            },
            |m| Held::Image(m),
            || {
                let mut pipe = StableDiffusion::load_with_config(model, config, device, dtype).with_context(|| format!("loading {}", model.display()))?;
                if let Some(t) = taesd_decode {
                    pipe.fast_decoder = Some(TaesdDecoder::load(t, device, dtype)?);
                }
                Ok(pipe)
            },
        )
    }

    /// A Riffusion-layout music model.
    pub fn music(&self, model: &Path, device: &Device, dtype: DType) -> Result<Rc<Riffusion>> {
        let key = key("music", &model.display().to_string(), String::new(), device, dtype);
        self.get_or_load(
            key,
            |h| match h {
                Held::Music(m) => Some(m.clone()),
                _ => None,
            },
            |m| Held::Music(m),
            || Riffusion::load(model, device, dtype).with_context(|| format!("loading {}", model.display())),
        )
    }

    fn get_or_load<T>(&self, key: Key, get: impl Fn(&Held) -> Option<Rc<T>>, hold: impl Fn(Rc<T>) -> Held, load: impl Fn() -> Result<T>) -> Result<Rc<T>> {
        if let Some(m) = self.held.borrow().iter().find(|(k, _)| *k == key).and_then(|(_, h)| get(h)) {
            return Ok(m);
        }
        let loaded = match load() {
            // the models held may be what leaves too little room: drop them and try again
            Err(e) if is_memory_refusal(&e) && !self.held.borrow().is_empty() => {
                self.held.borrow_mut().clear();
                load()?
            }
            other => other?,
        };
        self.loads.set(self.loads.get() + 1);
        let model = Rc::new(loaded);
        self.held.borrow_mut().push((key, hold(model.clone())));
        Ok(model)
    }
}

fn key(kind: &'static str, source: &str, options: String, device: &Device, dtype: DType) -> Key {
    Key { kind, source: source.to_string(), options, device: format!("{:?}", device.location()), dtype }
}

/// Whether `e` is a refusal of the memory check (not a bad file or a bad argument).
fn is_memory_refusal(e: &anyhow::Error) -> bool {
    use stipple_core::Error::Memory;
    e.chain().any(|c| {
        matches!(c.downcast_ref::<stipple_core::Error>(), Some(Memory(_)))
            || matches!(c.downcast_ref::<stipple_text::Error>(), Some(stipple_text::Error::Core(Memory(_))))
            || matches!(c.downcast_ref::<stipple_image::Error>(), Some(stipple_image::Error::Core(Memory(_))))
            || matches!(c.downcast_ref::<stipple_audio::AudioError>(), Some(stipple_audio::AudioError::Image(stipple_image::Error::Core(Memory(_)))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_loads_once_per_key() {
        let cache = ModelCache::default();
        let dir = stipple::defaults::model("image").unwrap();
        let a = cache.image(&dir, None, None, &Device::Cpu, DType::F32).unwrap();
        let b = cache.image(&dir, None, None, &Device::Cpu, DType::F32).unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(cache.loads(), 1);
        let c = cache.image(&dir, None, None, &Device::Cpu, DType::F16).unwrap();
        assert!(!Rc::ptr_eq(&a, &c));
        assert_eq!(cache.loads(), 2);
        // a failed load is not held, and says what failed
        let e = cache.text("/no/such/model", &Device::Cpu, DType::F32, None).err().expect("no such model");
        assert!(format!("{e:#}").contains("/no/such/model"), "{e:#}");
        assert_eq!(cache.loads(), 2);
    }

    #[test]
    fn memory_refusals_are_told_apart() {
        let refusal = anyhow::Error::from(stipple_text::Error::Core(stipple_core::Error::Memory("needs about 9 GiB".into())));
        assert!(is_memory_refusal(&refusal.context("loading x")));
        let other = anyhow::Error::from(stipple_core::Error::InvalidArgument("bad".into()));
        assert!(!is_memory_refusal(&other));
    }
}
