#!/usr/bin/env bash
# Prepare what one device call of bench/gpu_session.sh carries (run here, where PyPI is reachable):
#   .whl/         wheels (CPython 3.12, manylinux x86_64) of requirements.lock's packages, less
#                 torch and its CUDA wheels and the numerical stack that the device's CUDA image
#                 already has; gpu_session.sh installs only those the device lacks (snakemake and its needs);
#   .carry/data/  the CIFAR-10 JPEG archive and its SHA256SUMS.
# Both folders are git-ignored; the device tool takes them with carry=[".whl", ".carry"].
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
ON_THE_DEVICE='^(torch|torchvision|triton|nvidia-.*|cuda-.*|numpy|pandas|pyarrow|matplotlib|seaborn|pillow|contourpy|kiwisolver|fonttools|sympy|mpmath|networkx|black|snakefmt|shfmt-py|pytokens|pytest|pluggy|iniconfig|pygments)=='
rm -rf .whl && mkdir -p .whl .carry/data
grep -v -E '^#' requirements.lock | grep -v -i -E "$ON_THE_DEVICE" > .whl/requirements.txt
while read -r requirement; do
  # A binary wheel for the device's interpreter, else (a package published as source only) a pure-Python wheel built here.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$requirement" 2>/dev/null || python3 -m pip wheel -q --no-deps -w .whl "$requirement"
done < .whl/requirements.txt
if ls .whl/*.whl | grep -v -E -- '-(py3|py2.py3|cp312)-|-abi3-' ; then echo "error: the wheels above do not fit the device's CPython 3.12" >&2; exit 1; fi
cp "$DATA/cifar10-jpeg.tar.gz" "$DATA/SHA256SUMS" .carry/data/
(cd .carry/data && sha256sum -c --quiet SHA256SUMS)
du -sh .whl .carry | tr '\n' ' '; echo "(the device tool carries at most 64 MiB with the working tree)"
