#!/usr/bin/env bash
# The trainer benchmark's CUDA whole-job section on a GPU machine, as one command, run in the
# repo root with .whl/ beside it (made here by scripts/gpu-wheels):
#     bash bench/gpu_bench.sh            # with the device tool: carry [".whl"], timeout 600 s
# It installs the wheels into /tmp/site, checks that torch sees a GPU, and runs
# `bench/trainer_bench.py --sections job --devices cuda` at the issue's size (10 classes x
# 2,000 / 100 / 100 JPEGs at 320x240, ResNet-18 at 224, 5 epochs, defaults): decode img/s
# (PIL processes and nvJPEG), parallel efficiency, steady epoch / compute limit, whole
# command / limit. Results: $OUT/trainer_gpu.md, .json, .log and gpu_tests.log (bench/results/
# without $OUT).
# Then bench/job_start.py under `serve` (with .whl/serve/: job_start_gpu.md). Extra arguments
# go to trainer_bench.py (e.g. --sections job,efficiency; --streamed: the job again over the
# memory budget, with the decoded cache on the scratch disk (disk) and streamed, decoded per
# batch by nvJPEG and the CPU's processes (auto); --streamed disk,0,auto: each of those).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
out="${OUT:-bench/results}"
python3 -c "import torch, torchvision; assert torch.cuda.is_available(), 'no CUDA GPU'; \
print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"
nproc
# the CUDA-only tests first (skipped on CPU-only machines): nvJPEG within the stated tolerance
# of PIL, with its fallback; the batch probe's step
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_decoding.py tests/unit/test_batching.py \
  tests/unit/test_device_stream.py tests/unit/test_sources.py tests/trainers/test_overlap.py \
  tests/trainers/test_disk_cache.py \
  2>&1 | tee "$out/gpu_tests.log" || true
if [ "${FULL:-0}" = 1 ]; then
  # with FULL=1 (measured in the sixth session, bench/results/trainer_gpu.md): where a fresh
  # process's model set-up goes (cold, then with the trainer's GPU warm-up)
  for warm in "" --warm; do python3 bench/setup_probe.py $warm; done 2>&1 | tee "$out/setup_probe.jsonl"
  # import times with the machine's own bytecode (if its site-packages has none, every process
  # compiles torch's and sympy's sources again), then with a bytecode cache filled once, as an
  # installed environment has; the job below runs with that cache (PYTHONPYCACHEPREFIX)
  python3 -c "import torch, glob, os, sys; d = os.path.dirname(torch.__file__); \
  print('compiled bytecode beside torch:', len(glob.glob(d + '/__pycache__/*.pyc')), 'files')"
  for k in 1 2; do TIMEFORMAT="import torch, torchvision (machine's bytecode, run $k): %R s"
    time python3 -c "import torch, torchvision"; done
  export PYTHONPYCACHEPREFIX=/tmp/pycache
  for k in 1 2; do TIMEFORMAT="import torch, torchvision (bytecode cache, run $k): %R s"
    time python3 -c "import torch, torchvision"; done
  # what importing torch and torchvision costs there, by module (the slowest, cumulative µs)
  python3 -X importtime -c "import torch, torchvision" 2>&1 | sort -t'|' -k2 -n -r | head -40 \
    > "$out/importtime.txt" || true
fi
# the job with the training cache filling during the first epoch (TRAINING_AGENT_OVERLAP=1;
# off by default until a GPU run shows it trains the same model: docs/trainer.md)
TRAINING_AGENT_OVERLAP="${TRAINING_AGENT_OVERLAP:-1}" \
timeout 330 python3 bench/trainer_bench.py --sections job --devices cuda --out "$out/trainer_gpu.md" "$@" \
  2>&1 | tee "$out/trainer_gpu.log"
# where the streamed path's time goes: training beside each part of the decoding (PROBE=0: not)
if [ "${PROBE:-1}" = 1 ]; then
  timeout 150 python3 bench/stream_probe.py --out "$out/stream_probe.json" || true
fi
# the same whole job through a long-running `serve`, a fresh worker process vs the standby
# worker (the imports a fresh one pays); needs the HTTP stack of .whl/serve/ (SERVE=0: not)
if [ "${SERVE:-1}" = 0 ]; then
  echo "SERVE=0: job_start skipped"
elif python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
     --target /tmp/site-serve .whl/serve/*.whl; then
  TRAINING_AGENT_OVERLAP="${TRAINING_AGENT_OVERLAP:-1}" PYTHONPATH=/tmp/site:/tmp/site-serve \
    timeout 200 python3 bench/job_start.py --big --settle 15 \
    --out "$out/job_start_gpu.md" 2>&1 | tail -12 || true
else
  echo "the serve wheels did not install: job_start skipped"
fi
