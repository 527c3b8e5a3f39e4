#!/usr/bin/env bash
# Refresh the vendors' browser scripts trackgate serves, from the npm packages pinned in
# tests/e2e/browser (package-lock.json), the same versions the browser tests run:
#
#   segment/    @segment/analytics-next's standalone bundle as analytics.min.js
#               (/analytics.js/v1/{writeKey}/analytics.min.js) and the chunks it loads
#               (/analytics-next/bundles/...), with its LICENSE.MD and VERSION
#   openpanel/  @openpanel/web's script-tag build as op1.js (/op1.js), with its LICENSE and VERSION
#   uplot/      uPlot's minified IIFE build and stylesheet, the dashboard's chart (/dashboard/uplot/...),
#               with its LICENSE (MIT) and VERSION
#
# To move to a new version:
#   npm install --prefix tests/e2e/browser --save-exact @segment/analytics-next@<version>
#   gateway/static/update.sh
#   pytest -q tests/gateway/test_scripts.py tests/e2e/test_segment_browser.py tests/e2e/test_openpanel_browser.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
browser="$here/../../tests/e2e/browser"
npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error
modules="$browser/node_modules"
strip_map() { sed '/^\/\/# sourceMappingURL=/d' "$1"; }  # source maps are not shipped

segment="$modules/@segment/analytics-next"
rm -f "$here"/segment/*.js
strip_map "$segment/dist/umd/standalone.js" > "$here/segment/analytics.min.js"
for chunk in "$segment"/dist/umd/*.bundle.*.js; do
  strip_map "$chunk" > "$here/segment/$(basename "$chunk")"
done
cp "$segment/LICENSE.MD" "$here/segment/LICENSE.MD"
node -p "require('$segment/package.json').version" > "$here/segment/VERSION"

openpanel="$modules/@openpanel/web"
mkdir -p "$here/openpanel"
strip_map "$openpanel/dist/src/tracker.global.js" > "$here/openpanel/op1.js"
cp "$openpanel/LICENSE" "$here/openpanel/LICENSE"
node -p "require('$openpanel/package.json').version" > "$here/openpanel/VERSION"

uplot="$modules/uplot"
mkdir -p "$here/uplot"
strip_map "$uplot/dist/uPlot.iife.min.js" > "$here/uplot/uPlot.iife.min.js"
cp "$uplot/dist/uPlot.min.css" "$here/uplot/uPlot.min.css"
cp "$uplot/LICENSE" "$here/uplot/LICENSE"
node -p "require('$uplot/package.json').version" > "$here/uplot/VERSION"

echo "analytics.js $(cat "$here/segment/VERSION"), @openpanel/web $(cat "$here/openpanel/VERSION"), uPlot $(cat "$here/uplot/VERSION")"
