use candle_core::{Device, Tensor, D};
use std::time::Instant;
fn t(f: impl Fn() -> Tensor, name: &str) -> f64 {
    f();
    let mut v = vec![];
    for _ in 0..30 { let s = Instant::now(); let _ = f(); v.push(s.elapsed().as_secs_f64()*1e3); }
    v.sort_by(f64::total_cmp);
    println!("{name}: {:.3} ms", v[15]);
    v[15]
}
fn main() -> candle_core::Result<()> {
    let d = Device::Cpu;
    let (n, h, nh, hd, m) = (160usize, 768usize, 12usize, 64usize, 2048usize);
    let x = Tensor::randn(0f32, 1., (1, n, h), &d)?;
    let alpha = Tensor::ones(h, candle_core::DType::F32, &d)?;
    let qkv = Tensor::randn(0f32, 1., (1, n, 3 * h), &d)?;
    let cos = Tensor::randn(0f32, 1., (n, hd / 2), &d)?;
    let q4 = Tensor::randn(0f32, 1., (1, nh, n, hd), &d)?;
    let att = Tensor::randn(0f32, 1., (1, nh, n, n), &d)?;
    let gu = Tensor::randn(0f32, 1., (1, n, 2 * m), &d)?;
    let mut tot = 0.0;
    tot += t(|| candle_nn::ops::rms_norm(&x, &alpha, 1e-5).unwrap(), "rms_norm") * 2.0;
    tot += t(|| qkv.narrow(2, h, h).unwrap().reshape((1, n, nh, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap(), "heads copy") * 3.0;
    tot += t(|| candle_nn::rotary_emb::rope(&q4, &cos, &cos).unwrap(), "rope") * 2.0;
    tot += t(|| (q4.matmul(&q4.t().unwrap()).unwrap() * 0.125).unwrap(), "q k^T * scale");
    tot += t(|| candle_nn::ops::softmax_last_dim(&att).unwrap(), "softmax");
    tot += t(|| att.matmul(&q4).unwrap(), "att v");
    tot += t(|| q4.transpose(1, 2).unwrap().reshape((1, n, h)).unwrap(), "merge heads");
    tot += t(|| (&x + &x).unwrap(), "residual add") * 2.0;
    tot += t(|| stipple_kernels::swiglu::silu_mul(&gu).unwrap(), "silu_mul");
    println!("non-matmul-proj per layer: {tot:.2} ms, x12 = {:.1} ms", tot * 12.0);
    let _ = D::Minus1;
    Ok(())
}
