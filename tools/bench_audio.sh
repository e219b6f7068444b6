#!/usr/bin/env bash
# Audio speed benchmark, same machine and same run, stipple against torchaudio (the library
# Riffusion renders with), the same thread count:
#   1. rendering a 5.12 s Riffusion spectrogram (inverse mel + 32 Griffin-Lim iterations):
#      ROUNDS rounds, each a torchaudio run of 3 then a stipple run of 3, medians per round;
#   2. the real-time factor of the whole text-to-music path (prompt -> spectrogram windows ->
#      audio) with the tiny test model at STEPS steps.
#   PYTHON=.venv-ref/bin/python tools/bench_audio.sh [ROUNDS] [STEPS]
# PYTHON: a Python with the packages tools/bench_audio_reference.py needs, e.g.
#   python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 torchaudio==2.11.0 numpy
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-20}
PY=${PYTHON:-python3}
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --quiet
for r in $(seq "$ROUNDS"); do
  "$PY" tools/bench_audio_reference.py 5.12 3 2>/dev/null | tail -1 > "$OUT/audio-ref-$r.json"
  ./target/release/stipple --json bench audio --runs 3 --reference "$OUT/audio-ref-$r.json" \
    --model audio/tests/fixtures/riffusion-tiny --steps "$STEPS" > "$OUT/audio-stipple-$r.json"
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
refs, ours, rtf = [], [], []
for r in range(1, rounds + 1):
    ref = json.load(open(f"{out}/audio-ref-{r}.json"))
    s = json.load(open(f"{out}/audio-stipple-{r}.json"))
    refs.append(ref["render_median_s"]); ours.append(s["render_median_s"]); rtf.append(s["music"]["realtime_factor"])
    print(f"round {r}: torchaudio {ref['render_median_s']:.3f} s, stipple {s['render_median_s']:.3f} s, torchaudio/stipple {ref['render_median_s'] / s['render_median_s']:.2f}x; text-to-music real-time factor {s['music']['realtime_factor']:.3f}")
print(f"median of rounds: torchaudio {statistics.median(refs):.3f} s, stipple {statistics.median(ours):.3f} s "
      f"(ratio of medians {statistics.median(refs) / statistics.median(ours):.2f}x); text-to-music real-time factor {statistics.median(rtf):.3f}")
PY
