#!/usr/bin/env bash
# Fetch the widget renderer and require.js from npm into .cache/widgets-js/ (once), so the notebook
# render test can show widgets offline: nbconvert's default CDN URLs are unreachable here.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/widgets-js
if [ -s "$dest/embed-amd.js" ] && [ -s "$dest/require.js" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_widget_js.sh: npm is missing (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @jupyter-widgets/html-manager@1 requirejs@2 >/dev/null)
mkdir -p "$work/html-manager" "$work/requirejs" "$dest"
tar -xzf "$work"/jupyter-widgets-html-manager-*.tgz -C "$work/html-manager"
tar -xzf "$work"/requirejs-*.tgz -C "$work/requirejs"
cp "$work/html-manager/package/dist/embed-amd.js" "$dest/embed-amd.js"
cp "$work/requirejs/package/require.js" "$dest/require.js"
echo "widget JS in $dest"
