#!/usr/bin/env bash
# One command from a fresh machine: virtual environment, packages, the Fashion-MNIST dataset,
# then the default run (skip it with --no-run).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "note: Fashion-MNIST is missing; as root run: apt-get install dataset-fashion-mnist (or pass data.root=DIR)"
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements-cpu.txt      # the CPU wheel first: nothing then pulls CUDA torch
.venv/bin/pip install -q -e '.[test]'
if [ "${1:-}" != "--no-run" ]; then
  .venv/bin/dualat train fashion_mnist
fi
