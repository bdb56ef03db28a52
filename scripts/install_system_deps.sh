#!/usr/bin/env bash
# Install the system programs the project needs outside Python: graphviz's dot,
# which renders diagrams (asyncmachine.vis, the Jupyter extension). Does nothing
# when dot is already on PATH, so it is safe to run on every `make install`.
set -euo pipefail

if command -v dot >/dev/null 2>&1; then
    echo "system deps: graphviz dot found ($(command -v dot))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: graphviz's dot program is missing and apt-get is not available;" \
         "install graphviz with your package manager (brew install graphviz," \
         "dnf install graphviz, conda install graphviz) and run this again" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd=(sudo -n)
else
    echo "error: graphviz's dot program is missing and installing it needs root;" \
         "run: sudo apt-get update && sudo apt-get install -y graphviz" >&2
    exit 1
fi

echo "system deps: installing graphviz with apt-get"
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz

if ! command -v dot >/dev/null 2>&1; then
    echo "error: apt-get installed graphviz, but dot is still not on PATH" >&2
    exit 1
fi
echo "system deps: graphviz dot installed ($(command -v dot))"
