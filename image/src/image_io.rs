//! Pixels in and out of the pipelines, as diffusers' `VaeImageProcessor` does it: images
//! to `[1, 3, H, W]` in [-1, 1] (Lanczos-resized to the target size), masks to a binary
//! `[1, 1, H, W]` (grayscale, >= 0.5 is "repaint"), decoder output to 8-bit RGB.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, RgbImage, imageops::FilterType};

use crate::error::{Error, Result};

/// Opens an image file with a clear error.
pub fn open(path: &Path) -> Result<DynamicImage> {
    image::open(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))
}

/// Reads a `.npy` array (`--latents`). The header's shape is checked against the file's
/// size first: candle's reader allocates what the header says, so a small file claiming a
/// huge shape would otherwise exhaust memory or overflow (found by fuzzing).
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bad = |what: String| Error::Image(format!("{}: not a usable .npy array: {what}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
    let (header, data_len) = npy_header(&bytes).ok_or_else(|| bad("no .npy header".into()))?;
    let field = |key: &str| header.split_once(key).map(|(_, rest)| rest);
    let descr = field("'descr':").and_then(|r| r.split('\'').nth(1)).ok_or_else(|| bad("no descr".into()))?;
    let elem: usize = descr.trim_start_matches(['<', '>', '|', '=']).get(1..).and_then(|n| n.parse().ok()).ok_or_else(|| bad(format!("element type {descr}")))?;
    let shape = field("'shape':").and_then(|r| r.split_once('(')).and_then(|(_, r)| r.split_once(')')).map(|(dims, _)| dims).ok_or_else(|| bad("no shape".into()))?;
    let mut count = 1usize;
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: usize = d.parse().map_err(|_| bad(format!("shape ({shape})")))?;
        count = count.checked_mul(d).ok_or_else(|| bad(format!("shape ({shape}) overflows")))?;
    }
    if count.checked_mul(elem) != Some(data_len) {
        return Err(bad(format!("shape ({shape}) of {elem}-byte values needs {} bytes, the file holds {data_len}", count.saturating_mul(elem))));
    }
    Tensor::read_npy(path).map_err(|e| bad(e.to_string()))
}

/// The header text and the number of data bytes after it, for `.npy` format 1, 2 or 3.
fn npy_header(bytes: &[u8]) -> Option<(String, usize)> {
    let rest = bytes.strip_prefix(b"\x93NUMPY")?;
    let (&major, rest) = rest.split_first()?;
    let rest = rest.get(1..)?;
    let (len, rest) = match major {
        1 => (u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize, rest.get(2..)?),
        2 | 3 => (u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize, rest.get(4..)?),
        _ => return None,
    };
    let header = String::from_utf8_lossy(rest.get(..len)?).into_owned();
    Some((header, rest.len() - len))
}

fn resized(img: &DynamicImage, width: usize, height: usize) -> DynamicImage {
    if img.width() as usize == width && img.height() as usize == height {
        img.clone()
    } else {
        img.resize_exact(width as u32, height as u32, FilterType::Lanczos3)
    }
}

/// An RGB image as `[1, 3, height, width]` in [-1, 1].
pub fn image_to_tensor(img: &DynamicImage, width: usize, height: usize, device: &Device) -> Result<Tensor> {
    let rgb = resized(img, width, height).to_rgb8();
    let data: Vec<f32> = rgb.into_raw().into_iter().map(|v| v as f32 / 255.0 * 2.0 - 1.0).collect();
    Ok(Tensor::from_vec(data, (height, width, 3), &Device::Cpu)?.permute((2, 0, 1))?.unsqueeze(0)?.to_device(device)?)
}

/// A mask as `[1, 1, height, width]` of 0 (keep) and 1 (repaint); white means repaint.
pub fn mask_to_tensor(img: &DynamicImage, width: usize, height: usize, device: &Device) -> Result<Tensor> {
    let gray = resized(&DynamicImage::ImageLuma8(img.to_luma8()), width, height).to_luma8();
    let data: Vec<f32> = gray.into_raw().into_iter().map(|v| if v as f32 / 255.0 >= 0.5 { 1.0 } else { 0.0 }).collect();
    Ok(Tensor::from_vec(data, (1, 1, height, width), device)?)
}

/// Puts `init`'s pixels back into `out` wherever `mask` (both scaled to `out`'s size as
/// the pipeline scales them) keeps the picture: inpainting then changes masked pixels only.
pub fn keep_unmasked(out: &mut RgbImage, init: &DynamicImage, mask: &DynamicImage) {
    let (w, h) = (out.width() as usize, out.height() as usize);
    let init = resized(init, w, h).to_rgb8();
    let mask = resized(&DynamicImage::ImageLuma8(mask.to_luma8()), w, h).to_luma8();
    for ((px, src), m) in out.pixels_mut().zip(init.pixels()).zip(mask.pixels()) {
        // the same threshold as mask_to_tensor: below one half keeps
        if (m.0[0] as f32 / 255.0) < 0.5 {
            *px = *src;
        }
    }
}

/// Decoder output `[b, 3, h, w]` (about [-1, 1]) -> values in [0, 1] as `[b, h, w, 3]` f32.
pub fn to_unit_hwc(decoded: &Tensor) -> Result<Tensor> {
    Ok(decoded.to_dtype(DType::F32)?.affine(0.5, 0.5)?.clamp(0f32, 1f32)?.permute((0, 2, 3, 1))?.contiguous()?)
}

/// `[b, h, w, 3]` values in [0, 1] -> 8-bit images (rounded, as diffusers' `numpy_to_pil`).
pub fn to_rgb_images(unit_hwc: &Tensor) -> Result<Vec<RgbImage>> {
    let (b, h, w, _) = unit_hwc.dims4()?;
    let values = unit_hwc.flatten_all()?.to_vec1::<f32>()?;
    let per = h * w * 3;
    (0..b)
        .map(|i| {
            let px: Vec<u8> = values[i * per..(i + 1) * per].iter().map(|v| (v * 255.0).round() as u8).collect();
            RgbImage::from_raw(w as u32, h as u32, px).ok_or_else(|| Error::Image("image buffer size mismatch".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_unmasked_pixels_scales_the_init_and_mask_to_the_output() {
        // a 4x4 output; the init is 8x8 (scaled down), the mask's right half repaints
        let mut out = RgbImage::from_pixel(4, 4, image::Rgb([200, 0, 0]));
        let init = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, image::Rgb([0, 50, 0])));
        let mask = DynamicImage::ImageLuma8(image::GrayImage::from_fn(8, 8, |x, _| image::Luma([if x >= 4 { 255 } else { 0 }])));
        keep_unmasked(&mut out, &init, &mask);
        for (x, _, p) in out.enumerate_pixels() {
            assert_eq!(p.0, if x >= 2 { [200, 0, 0] } else { [0, 50, 0] }, "column {x}");
        }
    }
}
