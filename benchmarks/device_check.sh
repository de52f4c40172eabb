#!/usr/bin/env bash
# One call on a GPU machine: build the package with its CUDA extension for the
# GPU at hand, run the CUDA tests and the GPU benchmarks, and leave the logs in
# $OUT (gpu.txt, build.log, test_cuda.log, bench_cuda.log, bench_cuda.json).
#
# The machine has no network: Python packages it lacks travel as wheels in
# .whl/ (git-ignored).  Fetch them here once, from the repository root:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl cucim-cu13 pydicom nibabel
#
# (cuCIM is the reference of the sobel target; pydicom and nibabel are runtime
# dependencies that some tests import.  CuPy, scikit-image, scipy, numba,
# pybind11, scikit-build-core and pytest-benchmark are usually there already.)
# Then run this script there with .whl carried, e.g. with a 540 s limit:
#
#   bash benchmarks/device_check.sh
#
# Budget: the build takes 2-4 minutes (nvcc, one architecture), the tests and
# benchmarks about 3; each step has its own timeout so that the logs of the
# earlier ones come back even when a later one hangs.
set -uo pipefail
OUT=${OUT:-/tmp/medseg_device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# build for this GPU's architecture only (e.g. 90 on an H100): one nvcc pass
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
export CUDAARCHS=${CUDAARCHS:-$arch}
export MEDSEG_CUDA=ON
{
    echo "CUDAARCHS=$CUDAARCHS"
    time timeout 300 python3 -m pip install --no-build-isolation --no-deps -v -e . 2>&1 | tail -40
    python3 -c "import medseg_fast; print('backends:', medseg_fast.available_backends())"
} >"$OUT/build.log" 2>&1
tail -5 "$OUT/build.log"
timeout 240 python3 -m pytest tests/test_cuda.py tests/test_cuda_canny.py -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/test_cuda.log" | tail -20
timeout 240 python3 -m pytest benchmarks/bench_cuda.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-columns=min,median,max,rounds --benchmark-group-by=group \
    --benchmark-json="$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.log" | tail -40
