#!/usr/bin/env bash
# Checks that `rbl report` pages render in a real browser: headless Chromium (Debian package
# `chromium`) loads each page from disk with the network off, and the page's own script
# reports how many of its images decoded. Also writes a screenshot beside each page.
# Usage: scripts/check_report.sh RUN_DIR...   (each RUN_DIR holds report.html)
set -euo pipefail
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install chromium" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: $0 RUN_DIR..." >&2; exit 2; }
fail=0
for run in "$@"; do
  page="$(realpath "$run")/report.html"
  [ -f "$page" ] || { echo "$page: missing (run: rbl report $run)" >&2; fail=1; continue; }
  flags=(--headless --no-sandbox --disable-gpu --no-first-run --virtual-time-budget=5000
         --proxy-server=127.0.0.1:9 --user-data-dir="$(mktemp -d)")
  dom="$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null)"
  chromium "${flags[@]}" --window-size=1280,2400 --screenshot="$run/report.png" "file://$page" >/dev/null 2>&1
  attr() { grep -o "data-images-$1=\"[0-9?]*\"" <<<"$dom" | head -1 | cut -d'"' -f2; }
  total="$(attr total)"
  broken="$(attr broken)"
  sections="$(grep -o '<section id="[a-z-]*"' <<<"$dom" | wc -l)"
  echo "$page: $sections sections, $total images, $broken broken, screenshot $run/report.png"
  if [ "$total" = "?" ] || [ "$broken" != "0" ] || [ "$sections" -ne 8 ] || [ "$total" -lt 1 ]; then fail=1; fi
done
exit $fail
