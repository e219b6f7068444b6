#!/usr/bin/env bash
# Opens the real studio window under Xvfb, drives one text, one image and one music run
# with xdotool (the keyboard shortcuts: Ctrl+1/2/3 pick a tab, Ctrl+Enter generates) and
# grabs the window after each: OUT/studio-text.png, studio-image.png, studio-music.png.
#
#   tools/studio_screenshots.sh [OUT]      (default OUT: docs)
#
# Needs a studio build (cargo build --features studio; STIPPLE_BIN picks another binary)
# and, on Debian: xvfb xauth imagemagick x11-utils xdotool. The history goes to a
# temporary folder, not the user's. Fails when the window does not open or a screenshot
# is missing or blank.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs}
BIN=${STIPPLE_BIN:-target/debug/stipple}
[ -x "$BIN" ] || { echo "no studio build at $BIN: run cargo build --features studio first" >&2; exit 1; }
for tool in xvfb-run xdotool import; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install xvfb xauth imagemagick x11-utils xdotool)" >&2; exit 1; }
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export XDG_RUNTIME_DIR="$WORK/runtime" STIPPLE_STUDIO_HISTORY="$WORK/history"
mkdir -m 700 "$XDG_RUNTIME_DIR"

# the part that runs inside the virtual display
cat > "$WORK/drive.sh" <<'EOF'
set -u
BIN=$1; OUT=$2; LOG=$3
"$BIN" studio > "$LOG" 2>&1 &
APP=$!
WID=""
for _ in $(seq 1 120); do WID=$(xdotool search --onlyvisible --name "stipple studio" 2>/dev/null | head -1); [ -n "$WID" ] && break; sleep 0.5; done
[ -n "$WID" ] || { echo "the studio window did not open; its log:" >&2; cat "$LOG" >&2; kill $APP 2>/dev/null; exit 1; }
sleep 4   # the embedded models load in the background
xdotool windowfocus --sync "$WID"; sleep 0.5
shot() {   # tab key, seconds to let the run finish, file
  xdotool key --clearmodifiers "ctrl+$1"; sleep 0.5
  xdotool key --clearmodifiers ctrl+Return; sleep "$2"
  timeout 10 import -window "$WID" "$OUT/$3" || { echo "could not grab $3" >&2; kill $APP; exit 1; }
}
shot 1 4 studio-text.png
shot 2 6 studio-image.png
shot 3 15 studio-music.png
kill $APP 2>/dev/null; wait $APP 2>/dev/null
exit 0
EOF
xvfb-run -a -s "-screen 0 1280x860x24 -nolisten tcp" bash "$WORK/drive.sh" "$BIN" "$OUT" "$WORK/studio.log"

# each run left its result in the history: three entries
runs=$(find "$WORK/history" -name '[0-9]*.json' | wc -l)
[ "$runs" -eq 3 ] || { echo "expected 3 results in the history, found $runs; the studio's log:" >&2; cat "$WORK/studio.log" >&2; exit 1; }
# a blank grab (one colour) means nothing was drawn
for f in studio-text.png studio-image.png studio-music.png; do
  colours=$(convert "$OUT/$f" -format '%k' info:)
  [ "$colours" -gt 50 ] || { echo "$OUT/$f looks blank ($colours colours)" >&2; exit 1; }
  echo "$OUT/$f: $(identify -format '%wx%h' "$OUT/$f"), $colours colours"
done
