//! The masked-diffusion sampler, built from a spec like the continuous samplers: the spec
//! names the reference algorithm (LLaDA or Dream: token choice and step budget), the
//! confidence measure, the commit rule and the sampling filters; the sampler gives each
//! row's commit budget at every step of a block and runs the [`step`] that commits.

use std::ops::Range;

use candle_core::Tensor;
use stipple_kernels::confidence::Accumulate;

use super::confidence::Remasking;
use super::policy::{Commit, NoiseScope, Policy, RowStep, step};
use super::schedule::{dream_count, dream_transfer_probability, llada_counts};
use crate::Result;
use crate::error::invalid;
use crate::noise::NoiseSource;

/// The reference algorithm a model was trained for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// LLaDA `generate.py`: Gumbel-max tokens, each block's masks split evenly over its steps.
    #[default]
    Llada,
    /// Dream `diffusion_generate`: filtered categorical tokens, `1 - s/t` of the remaining
    /// masks per step.
    Dream,
}

/// How many tokens each step commits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum CommitRule {
    /// A fixed budget per step from the algorithm's schedule (LLaDA's even counts per block,
    /// Dream's `1 - s/t` of the remaining masks).
    #[default]
    Schedule,
    /// Fast-dLLM: the most confident token, plus every other whose confidence >= this.
    Threshold(f64),
    /// Fast-dLLM factor rule.
    Factor(f64),
    /// Dream `origin`: every masked position is revealed independently with probability
    /// `1 - s/t` (all on the last step).
    Origin,
}

/// Everything that chooses tokens and positions in masked diffusion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiscreteSamplerSpec {
    /// The reference algorithm (token choice and step budget).
    pub algorithm: Algorithm,
    /// Confidence measure.
    pub remasking: Remasking,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus filter (Dream-style sampling).
    pub top_p: Option<f64>,
    /// Top-k filter (Dream-style sampling).
    pub top_k: Option<usize>,
    /// Sample positions from `softmax(confidence / alg_temp)` instead of top-k (Dream).
    pub alg_temp: Option<f64>,
    /// Commit rule.
    pub commit: CommitRule,
    /// Dream's schedule epsilon (`linspace(1, eps, steps + 1)`), also `origin`'s.
    pub eps: f64,
    /// Confidences in float64, as Fast-dLLM takes them (its threshold, factor and cached
    /// decoding); LLaDA and Dream use the logits' float32.
    pub f64_confidence: bool,
}

impl Default for DiscreteSamplerSpec {
    fn default() -> Self {
        Self { algorithm: Algorithm::Llada, remasking: Remasking::LowConfidence, temperature: 0.0, top_p: None, top_k: None, alg_temp: None, commit: CommitRule::Schedule, eps: 1e-3, f64_confidence: false }
    }
}

impl DiscreteSamplerSpec {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<()> {
        if let CommitRule::Threshold(t) = self.commit
            && !(0.0..=1.0).contains(&t)
        {
            return Err(invalid("threshold must be in [0, 1]"));
        }
        if let CommitRule::Factor(f) = self.commit
            && !(f > 0.0)
        {
            return Err(invalid("factor must be > 0"));
        }
        if self.commit == CommitRule::Origin && self.remasking == Remasking::Random {
            return Err(invalid("origin reveals positions at random already; use low-confidence remasking"));
        }
        Ok(())
    }

    /// The sampler, with the step policy of the references.
    pub fn build(&self) -> Result<DiscreteSampler> {
        self.validate()?;
        let sampled = self.top_p.is_some_and(|p| p < 1.0) || self.top_k.is_some();
        // Dream's token choice (filtered categorical) also serves top-p / top-k / alg_temp
        // requests on LLaDA-style models; LLaDA's Gumbel-max otherwise
        let mut policy = if self.algorithm == Algorithm::Dream || sampled || self.alg_temp.is_some() {
            Policy::dream(self.remasking, self.temperature, self.top_p, self.top_k, self.alg_temp)
        } else {
            Policy::llada(self.temperature, self.remasking)
        };
        policy.commit = match self.commit {
            CommitRule::Schedule => policy.commit,
            CommitRule::Threshold(t) => Commit::Threshold(t),
            CommitRule::Factor(f) => Commit::Factor(f),
            // the probability is set at every step
            CommitRule::Origin => Commit::Bernoulli(1.0),
        };
        if self.f64_confidence {
            policy.accumulate = Accumulate::F64;
        }
        policy.noise_scope = NoiseScope::Counter;
        // the references commit nothing when the schedule says 0
        policy.at_least_one = !matches!(self.commit, CommitRule::Schedule | CommitRule::Origin);
        Ok(DiscreteSampler { spec: *self, policy })
    }
}

/// A built masked-diffusion sampler.
#[derive(Clone, Debug)]
pub struct DiscreteSampler {
    spec: DiscreteSamplerSpec,
    policy: Policy,
}

/// A block's commit budgets, fixed at its start (LLaDA's counts per row and step).
#[derive(Clone, Debug)]
pub struct BlockBudget {
    steps: usize,
    counts: Vec<Vec<usize>>,
}

impl DiscreteSampler {
    /// The step policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The budgets of a block of `steps` steps whose rows hold `masked` masks at its start.
    pub fn block_budget(&self, masked: &[usize], steps: usize) -> Result<BlockBudget> {
        let counts = masked.iter().map(|&n| llada_counts(n, steps)).collect::<Result<_>>()?;
        Ok(BlockBudget { steps, counts })
    }

    /// How many tokens each row commits at step `i` of the block, with `left` masks left
    /// per row (everything left once the block's steps are spent).
    pub fn commit_counts(&self, budget: &BlockBudget, i: usize, left: &[usize]) -> Vec<usize> {
        left.iter()
            .enumerate()
            .map(|(r, &n)| {
                if i + 1 >= budget.steps {
                    n // past the budget (or reverted commits): everything left
                } else if self.spec.algorithm == Algorithm::Dream {
                    dream_count(n, i, budget.steps, self.spec.eps)
                } else {
                    budget.counts[r][i].min(n)
                }
            })
            .collect()
    }

    /// Whether a step with these counts commits nothing by rule (the references then spend
    /// a model call on an unchanged canvas; the result is the same without it).
    pub fn commits_nothing(&self, counts: &[usize]) -> bool {
        self.spec.commit == CommitRule::Schedule && counts.iter().all(|&n| n == 0)
    }

    /// Step `i` of a block: proposes and commits into `canvas` (`[B][L]`, `logits`
    /// `[B, L, V]`) within `window`, `counts` per row from [`DiscreteSampler::commit_counts`].
    #[allow(clippy::too_many_arguments)]
    pub fn step<N: NoiseSource + ?Sized>(
        &mut self,
        logits: &Tensor,
        canvas: &mut [Vec<u32>],
        mask_id: u32,
        window: Range<usize>,
        counts: &[usize],
        budget: &BlockBudget,
        i: usize,
        noise: &mut N,
    ) -> Result<Vec<RowStep>> {
        if self.spec.commit == CommitRule::Origin {
            self.policy.commit = Commit::Bernoulli(dream_transfer_probability(i, budget.steps, self.spec.eps));
        }
        step(logits, canvas, mask_id, window, &self.policy, counts, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_references() {
        let llada = DiscreteSamplerSpec::default().build().unwrap();
        assert!(llada.policy().token.gumbel && llada.policy().commit == Commit::TopK && !llada.policy().at_least_one);
        let dream = DiscreteSamplerSpec { algorithm: Algorithm::Dream, alg_temp: Some(0.5), ..Default::default() }.build().unwrap();
        assert!(!dream.policy().token.gumbel && dream.policy().commit == Commit::SampledTopK { alg_temp: 0.5 });
        let fast = DiscreteSamplerSpec { commit: CommitRule::Threshold(0.9), f64_confidence: true, ..Default::default() }.build().unwrap();
        assert!(fast.policy().at_least_one && fast.policy().accumulate == Accumulate::F64);
        assert!(DiscreteSamplerSpec { commit: CommitRule::Threshold(1.5), ..Default::default() }.build().is_err());
        assert!(DiscreteSamplerSpec { commit: CommitRule::Origin, remasking: Remasking::Random, ..Default::default() }.build().is_err());
    }

    #[test]
    fn budgets_split_blocks_and_spend_the_rest_at_the_end() {
        let s = DiscreteSamplerSpec::default().build().unwrap();
        let b = s.block_budget(&[8, 5], 4).unwrap();
        assert_eq!(s.commit_counts(&b, 0, &[8, 5]), vec![2, 2]);
        assert_eq!(s.commit_counts(&b, 3, &[3, 4]), vec![3, 4]);
        assert!(s.commits_nothing(&[0, 0]) && !s.commits_nothing(&[0, 1]));
        let d = DiscreteSamplerSpec { algorithm: Algorithm::Dream, ..Default::default() }.build().unwrap();
        let n = d.commit_counts(&b, 0, &[8, 5]);
        assert_eq!(n, vec![dream_count(8, 0, 4, 1e-3), dream_count(5, 0, 4, 1e-3)]);
    }
}
