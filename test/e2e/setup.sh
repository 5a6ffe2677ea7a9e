#!/usr/bin/env bash
# Installs what the e2e suite needs, offline except for the npm registry and Debian's apt:
# Debian's Chromium, code-server 4.100.3 (VS Code 1.100 on Node 20) with the packages its native modules build against.
set -euo pipefail
cd "$(dirname "$0")/../.."

CODE_SERVER_VERSION=4.100.3
PREFIX=.cache/code-server

if [ -x "$PREFIX/node_modules/.bin/code-server" ] && [ -x /usr/bin/chromium ]; then
  echo "e2e setup: code-server $CODE_SERVER_VERSION and chromium already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config ripgrep >/dev/null

# @vscode/ripgrep's postinstall downloads rg from GitHub, which is unreachable here; its cache is seeded with Debian's rg.
RG_CACHE="$(node -p "require('os').tmpdir()")/vscode-ripgrep-cache-1.15.11"
mkdir -p "$RG_CACHE"
tar czf "$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$(dirname "$(command -v rg)")" rg

mkdir -p "$PREFIX"
# code-server's postinstall runs npm inside lib/vscode as whatever user owns it, and asks before installing.
npm_config_unsafe_perm=true npm_config_yes=true \
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION"
"$PREFIX/node_modules/.bin/code-server" --version
