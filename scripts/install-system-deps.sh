#!/usr/bin/env bash
# What the test suite needs from outside pip, installed only where it is missing (README set-up,
# command 1): Java 17 for the caption metrics (pycocoevalcap's PTB tokenizer and METEOR are Java
# programs) and Debian's chromium for the browser tests (scripts/install-browser.sh).
# Uses apt-get (through sudo when not root); elsewhere it names what to install by hand.
# Safe to run many times.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")"

if ! java -version >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null; then
    echo "install-system-deps: no java and no apt-get: install a Java 17 runtime with your package manager" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "install-system-deps: installing Java 17 (openjdk-17-jre-headless) with apt-get"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi
java -version 2>&1 | head -1

bash ./install-browser.sh
