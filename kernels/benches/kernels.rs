//! Benchmarks of stipple's fused kernels against the unfused candle ops they replace.

use std::time::Duration;

use candle_core::{D, DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stipple_kernels::confidence::{Accumulate, confidence_stats};

fn logits(rows: usize, vocab: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let v: Vec<f32> = (0..rows * vocab)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    Tensor::from_vec(v, (rows, vocab), &Device::Cpu).unwrap()
}

/// Unfused path: softmax, max and argmax as separate candle ops (no entropy, no top-2).
fn unfused(x: &Tensor) -> (Tensor, Tensor) {
    let x = x.to_dtype(DType::F32).unwrap();
    let m = x.max_keepdim(D::Minus1).unwrap();
    let e = x.broadcast_sub(&m).unwrap().exp().unwrap();
    let s = e.sum_keepdim(D::Minus1).unwrap();
    let p = e.broadcast_div(&s).unwrap();
    let p1 = p.max(D::Minus1).unwrap();
    let arg = x.argmax(D::Minus1).unwrap();
    (p1, arg)
}

fn bench_confidence(c: &mut Criterion) {
    let mut g = c.benchmark_group("confidence");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &(rows, vocab) in &[(256usize, 32000usize), (32, 126464)] {
        let x = logits(rows, vocab);
        let xb = x.to_dtype(DType::BF16).unwrap();
        let id = format!("{rows}x{vocab}");
        g.bench_with_input(BenchmarkId::new("fused_f32", &id), &x, |b, x| {
            b.iter(|| confidence_stats(x, Accumulate::F32).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("fused_f64acc", &id), &x, |b, x| {
            b.iter(|| confidence_stats(x, Accumulate::F64).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("fused_bf16", &id), &xb, |b, x| {
            b.iter(|| confidence_stats(x, Accumulate::F32).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("unfused_candle_f32", &id), &x, |b, x| {
            b.iter(|| unfused(x))
        });
        g.bench_with_input(BenchmarkId::new("unfused_candle_bf16", &id), &xb, |b, x| {
            b.iter(|| unfused(x))
        });
    }
    g.finish();
}

criterion_group!(confidence, bench_confidence);
criterion_main!(confidence);
