#!/usr/bin/env bash
# Screenshots of the docs as a reader sees them: builds the site (strict) into a temporary
# directory, serves it on 127.0.0.1 and has headless Chromium (Debian's `chromium`, or
# $CHROMIUM) photograph each page at 1280 px wide, screen by screen, into OUT_DIR
# (default build/screenshots/): NAME-01.png, NAME-02.png..., NAME.html (the rendered DOM)
# and pages.json (title, heading, height, and the code blocks and tables wider than the
# page shows). Chromium reaches nothing but the loopback address. Every step has a time
# limit; the script stops by itself and exits non-zero with the reason on any failure.
#
#   bash scripts/screenshots.sh [OUT_DIR] [NAME=PATH ...]
#
# Without pages: the home page, getting started, the LLM and credit gate guides, the dev
# server and every API reference page.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-build/screenshots}"
shift || true
pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  pages=(home= getting-started=getting-started/ llm=llm/ credit-gate=credit-gate/
    devserver=devserver/)
  for page in docs/reference/*.md; do
    name="$(basename "$page" .md)"
    pages+=("reference-$name=reference/$name/")
  done
fi

fail() {
  echo "screenshots: $*" >&2
  exit 1
}

chromium="${CHROMIUM:-chromium}"
command -v "$chromium" >/dev/null 2>&1 \
  || fail "no '$chromium' on PATH: install Debian's (apt-get install chromium) or set CHROMIUM"
[ -x .venv/bin/mkdocs ] || fail "no .venv/bin/mkdocs: run scripts/setup.sh first"

site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
# The end-of-life notice of Material for MkDocs is acknowledged (README, "Docs toolchain").
if ! log="$(NO_MKDOCS_2_WARNING=1 timeout 300 .venv/bin/mkdocs build --strict --quiet \
  --site-dir "$site" 2>&1)"; then
  fail "the docs build failed (or took over 300 s):"$'\n'"$log"
fi

rm -f "$out"/*.png "$out"/*.html "$out"/pages.json 2>/dev/null || true
# Each page has its own deadlines inside; this bounds the whole run.
timeout 600 .venv/bin/python scripts/render_pages.py "$chromium" "$site" "$out" "${pages[@]}" \
  || fail "rendering failed or took over 600 s (see above)"
echo "screenshots: $(find "$out" -name '*.png' | wc -l) pictures in $out" >&2
