//! Putting clips together: repeating a seamless loop, and joining clips with equal-power
//! crossfades (a playlist's mix, a continuation joined to its source).

/// `clip` played `times` times in a row (a loop made with `looped` repeats without a seam).
pub fn repeat(clip: &[f32], times: usize) -> Vec<f32> {
    clip.repeat(times)
}

/// The clips one after another, each overlapping the next by `fade` samples with
/// equal-power gains (cos / sin of a quarter turn), so the loudness holds through the
/// join. The fade is shortened to the shorter clip of each pair.
pub fn crossfade(clips: &[&[f32]], fade: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(clips.iter().map(|c| c.len()).sum());
    for clip in clips {
        let f = fade.min(out.len()).min(clip.len());
        let start = out.len() - f;
        for i in 0..f {
            let (out_gain, in_gain) = gains(i, f);
            out[start + i] = out[start + i] * out_gain + clip[i] * in_gain;
        }
        out.extend_from_slice(&clip[f..]);
    }
    out
}

/// The gains of the outgoing and incoming clip at sample `i` of an `f`-sample crossfade.
pub fn gains(i: usize, f: usize) -> (f32, f32) {
    let x = (i as f32 + 0.5) / f as f32 * std::f32::consts::FRAC_PI_2;
    (x.cos(), x.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossfades_overlap_by_the_fade_with_equal_power() {
        let (a, b) = (vec![1.0f32; 100], vec![-1.0f32; 50]);
        let mix = crossfade(&[&a, &b], 20);
        assert_eq!(mix.len(), 130);
        assert_eq!(&mix[..80], &a[..80]);
        assert_eq!(&mix[100..], &b[20..]);
        for i in 0..20 {
            let (g_out, g_in) = gains(i, 20);
            assert!((g_out * g_out + g_in * g_in - 1.0).abs() < 1e-6);
            assert!((mix[80 + i] - (g_out - g_in)).abs() < 1e-6);
        }
        // a fade longer than a clip is cut to it; no clips, no samples
        assert_eq!(crossfade(&[&a, &b[..5]], 20).len(), 100);
        assert!(crossfade(&[], 10).is_empty());
        assert_eq!(repeat(&[1.0, 2.0], 3), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    }
}
