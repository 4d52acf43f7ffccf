#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with every dependency, then install
# alike_ros into it in editable mode. Idempotent; safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade pip
# torch first and pinned, so nothing else can make pip resolve a CUDA build
pip install --quiet torch==2.13.0
pip install --quiet -r requirements.txt -r requirements-ros.txt -r requirements-dev.txt
pip install --quiet --no-deps -e .
