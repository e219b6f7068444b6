use candle_core::{Device, Tensor, DType};
use std::time::Instant;
fn t(f: impl Fn() -> Tensor, name: &str) {
    f();
    let mut v = vec![];
    for _ in 0..20 { let s = Instant::now(); let _ = f(); v.push(s.elapsed().as_secs_f64()*1e3); }
    v.sort_by(f64::total_cmp);
    println!("{name}: {:.3} ms", v[10]);
}
fn main() -> candle_core::Result<()> {
    let d = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (1, 160, 768), &d)?;
    let w = Tensor::randn(0f32, 1., (2048, 768), &d)?;
    let wt = w.t()?.contiguous()?;
    let w2 = Tensor::randn(0f32, 1., (768, 2048), &d)?;
    let x2 = Tensor::randn(0f32, 1., (1, 160, 2048), &d)?;
    let x2d = x.squeeze(0)?;
    t(|| x.broadcast_matmul(&w.t().unwrap()).unwrap(), "x @ w.t (3d broadcast)");
    t(|| x2d.matmul(&w.t().unwrap()).unwrap(), "x2d @ w.t");
    t(|| x2d.matmul(&wt).unwrap(), "x2d @ wt contiguous");
    t(|| x.broadcast_matmul(&wt).unwrap(), "x @ wt contiguous 3d");
    t(|| x2.squeeze(0).unwrap().matmul(&w2.t().unwrap()).unwrap(), "down x2d @ w2.t");
    let lin = candle_nn::Linear::new(w.clone(), None);
    use candle_core::Module;
    t(|| lin.forward(&x).unwrap(), "Linear::forward");
    let q = Tensor::randn(0f32, 1., (1, 12, 160, 64), &d)?;
    t(|| q.matmul(&q.t().unwrap()).unwrap(), "attn q k^T");
    let a = Tensor::randn(0f32, 1., (1, 12, 160, 160), &d)?;
    t(|| candle_nn::ops::softmax_last_dim(&a).unwrap(), "softmax");
    t(|| a.matmul(&q).unwrap(), "attn a v");
    let g = Tensor::randn(0f32, 1., (1, 160, 2048), &d)?;
    t(|| (candle_nn::ops::silu(&g).unwrap() * &g).unwrap(), "silu*up");
    t(|| q.transpose(1,2).unwrap().contiguous().unwrap(), "transpose contiguous");
    let _ = DType::F32;
    Ok(())
}
