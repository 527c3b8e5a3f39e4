#!/usr/bin/env bash
# Refresh the analytics.js that trackgate serves at /analytics.js/v1/{writeKey}/analytics.min.js (and the
# chunks it loads from /analytics-next/bundles/) from the npm package pinned in tests/e2e/browser, the
# same version the browser tests run:
#
#   npm install --prefix tests/e2e/browser @segment/analytics-next@<version> --save-exact
#   gateway/static/segment/update.sh
#   pytest -q tests/e2e/test_browser_sdks.py tests/gateway/test_scripts.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
npm ci --prefix "$root/tests/e2e/browser" --no-audit --no-fund --loglevel=error
package="$root/tests/e2e/browser/node_modules/@segment/analytics-next"
umd="$package/dist/umd"
rm -f "$here"/*.js
# the standalone bundle is what Segment's CDN serves as analytics.min.js; source maps are not shipped
sed '/^\/\/# sourceMappingURL=/d' "$umd/standalone.js" > "$here/analytics.min.js"
for chunk in "$umd"/*.bundle.*.js; do
  sed '/^\/\/# sourceMappingURL=/d' "$chunk" > "$here/$(basename "$chunk")"
done
cp "$package/LICENSE.MD" "$here/LICENSE.MD"
node -p "require('$package/package.json').version" > "$here/VERSION"
echo "analytics.js $(cat "$here/VERSION") in $here"
