#!/usr/bin/env bash
# Install the system programs the project needs outside Python: graphviz's dot,
# which renders diagrams (asyncmachine.vis, the Jupyter extension), and Debian's
# Chromium, which the browser tests and `am-demo --headless` drive. Installs only
# what is missing, so it is safe to run on every `make install`.
set -euo pipefail

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system deps: dot ($(command -v dot)) and chromium ($(command -v chromium)) found"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing ${missing[*]} and apt-get is not available;" \
         "install them with your package manager (graphviz: brew install graphviz;" \
         "chromium: your distribution's chromium package) and run this again" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo -n)
else
    echo "error: missing ${missing[*]}, and installing needs root;" \
         "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "system deps: installing ${missing[*]} with apt-get (chromium is a large download)"
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"

for program in dot chromium; do
    if ! command -v "$program" >/dev/null 2>&1; then
        echo "error: apt-get finished, but $program is still not on PATH" >&2
        exit 1
    fi
done
echo "system deps: dot ($(command -v dot)) and chromium ($(command -v chromium)) installed"
