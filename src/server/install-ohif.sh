#!/usr/bin/env bash
# Puts the prebuilt OHIF viewer (the dist/ folder of the npm package @ohif/app, version from
# package.json "config.ohifVersion") into node_modules/.ohif-app; npm's "postinstall" runs this.
# Why not a plain dependency: @ohif/app declares its build-time packages as dependencies and some of
# them (@ohif/i18n, @ohif/ui at the same version) are not in the registry, so `npm install @ohif/app`
# fails, while the built viewer needs none of them. A dot folder is left alone by npm's pruning.
# A failed download only warns: the gateway runs without the viewer (/ohif/ answers 503).
set -euo pipefail
cd "$(dirname "$0")/../.."

version="$(node -p 'require("./package.json").config.ohifVersion')"
target=node_modules/.ohif-app
installed="$(node -p "try { require('./$target/package.json').version } catch { '' }")"
[ "$installed" = "$version" ] && [ -f "$target/dist/index.html" ] && exit 0

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Installing the OHIF viewer @ohif/app@$version (prebuilt dist/)" >&2
if ! npm pack "@ohif/app@$version" --pack-destination "$tmp" --silent >/dev/null; then
  echo "warning: could not download @ohif/app@$version: the OHIF viewer is not installed" >&2
  exit 0
fi
rm -rf "$target"
mkdir -p "$target"
tar xzf "$tmp"/ohif-app-*.tgz -C "$target" --strip-components=1
