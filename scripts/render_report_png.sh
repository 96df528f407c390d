#!/usr/bin/env bash
# Render an HTML file (default: reports/weekly_report.html) to a PNG screenshot with headless
# Chromium, to look at the weekly report the way a person would.
#
#   scripts/render_report_png.sh [IN.html] [OUT.png] [WIDTHxHEIGHT]
#
# Defaults: reports/weekly_report.html -> reports/weekly_report.png at 1280x4000.
# Needs `chromium` (Debian: apt-get install -y chromium) or set CHROMIUM=/path/to/binary.
# The page is opened from disk with networking features off; a self-contained report needs none.
set -euo pipefail

in="${1:-reports/weekly_report.html}"
out="${2:-${in%.html}.png}"
size="${3:-1280x4000}"

if [[ ! -f "$in" ]]; then
  echo "render_report_png: no such file: $in" >&2
  exit 1
fi
browser="${CHROMIUM:-}"
if [[ -z "$browser" ]]; then
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser="$candidate"; break; fi
  done
fi
if [[ -z "$browser" ]]; then
  echo "render_report_png: chromium not found (apt-get install -y chromium, or set CHROMIUM=...)" >&2
  exit 1
fi

abs_in="$(cd "$(dirname "$in")" && pwd)/$(basename "$in")"
mkdir -p "$(dirname "$out")"
abs_out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$abs_out" --window-size="${size/x/,}" "file://$abs_in" >/dev/null 2>&1 || {
  echo "render_report_png: chromium failed to render $in" >&2
  exit 1
}
[[ -s "$abs_out" ]] || { echo "render_report_png: no screenshot written" >&2; exit 1; }
echo "$abs_out"
