#!/usr/bin/env bash
# What the test suite needs from outside pip, installed only where it is missing (README set-up,
# command 1): Java 17 for the caption metrics (pycocoevalcap's PTB tokenizer and METEOR are Java
# programs) and Debian's chromium for the browser tests (scripts/install-browser.sh).
# Uses apt-get (through sudo when not root); elsewhere it names what to install by hand.
# Safe to run many times.
set -euo pipefail
cd "$(dirname "$0")"

if ! java -version >/dev/null 2>&1; then
  . ./apt-install.sh
  apt_install "a Java 17 runtime" openjdk-17-jre-headless
fi
java -version 2>&1 | head -1

bash ./install-browser.sh
