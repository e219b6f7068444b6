#!/usr/bin/env bash
# Checks that the golden parity tests can fail: applies one-character changes to the math
# of each sampler, one at a time, runs the scheduler golden tests, and reverts.
# Usage: tools/mutation_check.sh   (from the repository root; takes a few minutes)
set -u
cd "$(dirname "$0")/.."
mutations=(
  "core/src/samplers/euler.rs|s/(next - sigma) as f64/(next + sigma) as f64/"
  "core/src/samplers/euler_ancestral.rs|s/let down = (to \* to - up \* up).sqrt();/let down = (to * to + up * up).sqrt();/"
  "core/src/samplers/heun.rs|s/((prev_derivative + derivative)? \/ 2.0)/((prev_derivative + derivative)? \/ 3.0)/"
  "core/src/samplers/ddim.rs|s/let direction = (1.0 - a_prev - std \* std).sqrt();/let direction = (1.0 - a_prev + std * std).sqrt();/"
  "core/src/samplers/ddpm.rs|s/let sample_coeff = current_alpha.sqrt() \* b_prev \/ b_t;/let sample_coeff = current_alpha.sqrt() * b_prev \/ b_prev;/"
  "core/src/samplers/dpm_solver_multistep.rs|s/-(0.5 \* (alpha_t \* e))/-(0.6 * (alpha_t * e))/"
  "core/src/samplers/dpm_solver_multistep.rs|s/(sigma_t \* e.sqrt()) as f64/(sigma_t * e) as f64/"
  "core/src/samplers/unipc.rs|s/let pred_res = d1.affine(0.5, 0.0)?;/let pred_res = d1.affine(0.4, 0.0)?;/"
  "core/src/samplers/unipc.rs|s/(None, 0.5)/(None, 0.6)/"
  "core/src/samplers/lcm.rs|s/let sigma_data = 0.5f32;/let sigma_data = 0.6f32;/"
  "core/src/samplers/lcm.rs|s/unwrap_or(10.0) as f32/unwrap_or(1.0) as f32/"
  "core/src/samplers/flow_match_euler.rs|s/let dt = self.sigmas\[i + 1\] - self.sigmas\[i\];/let dt = self.sigmas[i + 1] - self.sigmas[i] * 1.01;/"
  "core/src/timesteps.rs|s/let step = (stop - start) \/ (num - 1) as f64;/let step = (stop - start) \/ num as f64;/"
  "core/src/timesteps.rs|s/let rho = 7.0;/let rho = 6.0;/"
  "core/src/schedule.rs|s/acc \*= (1.0f32 - b) as f64;/acc *= (1.0f32 + b) as f64;/"
)
caught=0
for m in "${mutations[@]}"; do
  file=${m%%|*}; expr=${m#*|}
  cp "$file" "$file.orig"
  sed -i "$expr" "$file"
  if cmp -s "$file" "$file.orig"; then
    echo "NOT APPLIED  $file: $expr"; mv "$file.orig" "$file"; continue
  fi
  if cargo test -q -p stipple-core --lib --test scheduler_golden >/dev/null 2>&1; then
    echo "SURVIVED     $file: $expr"
  else
    echo "caught       $file: $expr"; caught=$((caught + 1))
  fi
  mv "$file.orig" "$file"
done
echo "$caught of ${#mutations[@]} mutations caught"
