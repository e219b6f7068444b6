#!/usr/bin/env bash
# Checks that the parity tests can fail: applies small changes to the math of each
# sampler (scheduler goldens) and of the text models, decoder and infilling automaton
# (text parity / infill / decode tests), one at a time, and reverts.
# Usage: tools/mutation_check.sh [core|text]   (from the repository root; takes minutes)
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
text_mutations=(
  "text/src/models/transformer.rs|s/powf((2 \* i) as f32/powf((2 * i + 1) as f32/"
  "text/src/models/transformer.rs|s/parts.push(cached.narrow(2, start + n, total - start - n)?);/parts.push(cached.narrow(2, start, total - start - n)?);/"
  "text/src/generate.rs|s/if shift \&\& p > 0 { p - 1 }/if shift \&\& p > 1 { p - 1 }/"
  "text/src/generate.rs|s/if gv { mask } else { t }/if gv { t } else { t }/"
  "text/src/generate.rs|s/counts\[r\]\[i\].min(n)/counts[r][i].min(n) + 1/"
  "text/src/models/llada.rs|s/scale_logits: self.scale_logits,/scale_logits: false,/"
  "kernels/src/attention.rs|s/let kvh = h \/ groups;/let kvh = h % hkv;/"
  "text/src/infill/automaton.rs|s/let c2 = (c + 1).min(self.min);/let c2 = c.min(self.min);/"
  "text/src/infill/mod.rs|s/format!(\" (?:{base})\")/format!(\"(?:{base})\")/"
)
run_list() {
  local test_cmd=$1; shift
  local caught=0 total=0
  for m in "$@"; do
    total=$((total + 1))
    file=${m%%|*}; expr=${m#*|}
    cp "$file" "$file.orig"
    sed -i "$expr" "$file"
    if cmp -s "$file" "$file.orig"; then
      echo "NOT APPLIED  $file: $expr"; mv "$file.orig" "$file"; touch "$file"; continue
    fi
    if $test_cmd >/dev/null 2>&1; then
      echo "SURVIVED     $file: $expr"
    else
      echo "caught       $file: $expr"; caught=$((caught + 1))
    fi
    mv "$file.orig" "$file"
    touch "$file"  # the restored copy is older than the mutant's build: make cargo rebuild
  done
  echo "$caught of $total mutations caught"
}
what=${1:-all}
if [ "$what" = text ] || [ "$what" = all ]; then
  run_list "cargo test -q -p stipple-text" "${text_mutations[@]}"
fi
[ "$what" = text ] && exit 0
caught=0
for m in "${mutations[@]}"; do
  file=${m%%|*}; expr=${m#*|}
  cp "$file" "$file.orig"
  sed -i "$expr" "$file"
  if cmp -s "$file" "$file.orig"; then
    echo "NOT APPLIED  $file: $expr"; mv "$file.orig" "$file"; touch "$file"; continue
  fi
  if cargo test -q -p stipple-core --lib --test scheduler_golden >/dev/null 2>&1; then
    echo "SURVIVED     $file: $expr"
  else
    echo "caught       $file: $expr"; caught=$((caught + 1))
  fi
  mv "$file.orig" "$file"
  touch "$file"
done
echo "$caught of ${#mutations[@]} mutations caught"
