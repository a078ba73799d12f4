#!/usr/bin/env bash
# The web view's tests drive a real headless browser: Debian's chromium and its chromedriver.
# Installs both with apt-get when either is missing (a fresh machine), then prints their versions.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  :
else
  echo "==> installing Debian's chromium and chromium-driver for the web view's browser tests"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO="sudo"
    else
      echo "browser-env: chromium and chromedriver are missing and this user cannot apt-get install them" >&2
      echo "browser-env: run as root: apt-get update && apt-get install -y chromium chromium-driver" >&2
      exit 1
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
echo "==> $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1)"
