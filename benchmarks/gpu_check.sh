#!/usr/bin/env bash
# The GPU check (issue 24): on a machine with one CUDA GPU, lent for minutes, run the CUDA tests,
# train with the whole-step CUDA graph and with --no-compile (they must train alike), time log p(x)
# at K = 5000 on 1,000 and 10,000 test images, AIS on 100 and the benchmarks, in about 8 minutes.
# From the repository root:
#
#   bash benchmarks/gpu_check.sh                                    # on the GPU machine
#   DEVICE=cpu QUICK=1 OUT=/tmp/dry bash benchmarks/gpu_check.sh     # dry run: every command, tiny sizes
#
# Settings (environment):
#   OUT     where the results go (default /tmp/gpucheck-out): all.log (every step's command, the end
#           of its output, its exit status and seconds), summary.json (each step's status, seconds
#           and key numbers, and the checks; benchmarks/gpu_check.py writes it) and steps.tar.gz
#           (each step's whole log, metrics.jsonl, eval JSONs, benchmark JSONs; no checkpoints).
#   WHEELS  wheels of what the GPU image lacks (default .whl/): pyro-ppl, pyro-api, arviz 0.23,
#           xarray-einstats, h5netcdf, platformdirs. Installed with pip --no-index --no-deps into a
#           scratch folder on PYTHONPATH, unless pyro and arviz are installed already.
#   DATA    a datasets folder holding MNIST/raw/*.gz (default .gpudata/), copied to a scratch
#           folder that PYRO_VAE_DATA names: torchvision unpacks the archives there, offline.
#   DEVICE  cuda (default) or cpu.  QUICK=1: tiny sizes (a dry run, tested by tests/system/test_gpu_check.py).
#   PY      the Python interpreter (default python3).
#   BUDGET  seconds after which the optional steps are skipped (default 330);
#   HARD    seconds after which no step starts, and which no step runs past (default 450).
#           Give the device call a limit above HARD: the summary takes a few seconds after it.
# Each step has its own timeout and a failed step never stops the script: the summary is always written.
set -u
cd "$(dirname "$0")/.." || exit 1  # the repository root
REPO=$PWD
OUT=$(mkdir -p "${OUT:-/tmp/gpucheck-out}" && cd "${OUT:-/tmp/gpucheck-out}" && pwd) || exit 1
WHEELS=${WHEELS:-.whl}
DATA=${DATA:-.gpudata}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET=${BUDGET:-330}
HARD=${HARD:-450}
PY=${PY:-python3}

WORK=$(mktemp -d /tmp/gpucheck.XXXXXX)
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/data"
LOG=$OUT/all.log
: > "$LOG"
: > "$WORK/steps.tsv"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYRO_VAE_DATA=$WORK/data
export PYTHONPATH=$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}

say() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT [optional] -- COMMAND...: run COMMAND with its own timeout (never past HARD) into
# logs/NAME.log; record NAME, exit status, seconds and limit in steps.tsv (124/137: timed out).
step() {
  local name=$1 limit=$2 optional=no
  shift 2
  if [ "$1" = optional ]; then optional=yes; shift; fi
  [ "$1" = -- ] && shift
  local left=$((HARD - SECONDS))
  if [ "$left" -lt 5 ] || { [ $optional = yes ] && [ "$SECONDS" -ge "$BUDGET" ]; }; then
    printf '%s\tskipped\t0\t0\n' "$name" >> "$WORK/steps.tsv"
    say "=== $name: skipped at ${SECONDS} s (BUDGET $BUDGET, HARD $HARD)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "=== $name (limit ${limit} s, at ${SECONDS} s): $*"
  local start=$SECONDS rc
  timeout -k 10 "$limit" "$@" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >> "$WORK/steps.tsv"
  tail -n 30 "$WORK/logs/$name.log" >> "$LOG"
  say "--- $name: exit $rc after $((SECONDS - start)) s"
}

# Sizes: the real ones, or (QUICK=1) tiny ones that only check the commands run.
IWAE=configs/papers/burda_1layer_iwae_k5.yaml  # the IWAE paper's 784-200-200-50 tanh net, batch 20
if [ "$QUICK" = 1 ]; then
  TRAIN_SIZE="--epochs 1 --limit-train 200 --limit-test 100"; IWAE_SIZE=$TRAIN_SIZE
  EVAL_1K="--num-samples 30 --limit 50"; EVAL_ALL="--num-samples 30 --limit 100"
  AIS_SIZE="--ais-steps 3 --ais-chains 2 --leapfrog 2 --limit 10"
  BENCH_TRAIN="--rounds 1 --steps 2 --warmup 2"
  BENCH_EVAL="--num-images 20 --num-samples 30"; BENCH_AIS="--num-images 5 --steps 2 --chains 2 --leapfrog 2"
  SHORT_TESTS="--collect-only"   # the selection exists; running it on 2 CPU cores takes minutes
else
  TRAIN_SIZE="--epochs 3"
  # 2 epochs: the --no-compile step of batch 20 is launch-bound (~3,000 steps an epoch)
  IWAE_SIZE="--epochs 2"
  EVAL_1K="--num-samples 5000 --limit 1000"; EVAL_ALL="--num-samples 5000"
  AIS_SIZE="--ais-steps 500 --limit 100"  # T = 500, a tenth of the CUDA default: s/step is what counts
  BENCH_TRAIN=""; BENCH_EVAL="--num-images 1000 --num-samples 5000"; BENCH_AIS="--num-images 100 --steps 20"
  SHORT_TESTS=""
fi
# no GPU graph on the CPU: benchmarks/train_step.py refuses NAME+graph there
GRAPH=$([ "$DEVICE" = cuda ] && echo yes)

# ------------------------------------------------------------------ the machine, the packages, the data
{ echo "gpu_check: DEVICE=$DEVICE QUICK=$QUICK BUDGET=$BUDGET HARD=$HARD, $(date -u)"
  git -C "$REPO" log -1 --format='commit %h %s' 2>/dev/null
  if [ "$DEVICE" = cuda ]; then nvidia-smi; fi; } >> "$LOG" 2>&1

# What the image lacks, from the carried wheels, into a folder that goes first on PYTHONPATH (the
# image's site-packages stay as they are); then the MNIST archives, into the scratch data folder.
install() {
  if "$PY" -c 'import importlib.util as u; exit(not (u.find_spec("pyro") and u.find_spec("arviz")))'; then
    echo "pyro and arviz are installed: nothing to install"
  else
    "$PY" -m pip install --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl || return
  fi
  [ -d "$DATA/MNIST/raw" ] || { echo "no $DATA/MNIST/raw: carry the MNIST archives (docs/performance.md, GPU check)"; return 1; }
  cp -r "$DATA"/. "$WORK/data/" && chmod -R u+w "$WORK/data" && ls -R "$WORK/data"
}
export -f install
export PY WORK WHEELS DATA
step install 120 -- bash -c install
step versions 60 -- $PY benchmarks/gpu_check.py versions

# ------------------------------------------------------------------ the CUDA tests (skipped on a CPU)
step tests_cuda 150 -- $PY -m pytest -q -p no:cacheprovider -m cuda tests

# ------------------------------------------------------------------ the IWAE net with the CUDA graph, evaluated
# first, as the evaluations and the optional benchmarks use its run
TRAIN="scripts/svi_train.py --device $DEVICE --no-plots"
step train_iwae_graph 120 -- $PY $TRAIN --config $IWAE $IWAE_SIZE --out "$WORK/runs/train_iwae_graph"
EVAL="scripts/evaluate.py $WORK/runs/train_iwae_graph --device $DEVICE"
step eval_1k 120 -- $PY $EVAL $EVAL_1K --out "$WORK/eval_1k"
step eval_10k 180 -- $PY $EVAL $EVAL_ALL --out "$WORK/eval_10k"
# beside eval_1k's eval.json, so that AIS is compared with IWAE on the same images
step ais_100 150 -- $PY $EVAL --method ais $AIS_SIZE --out "$WORK/eval_1k"

# ------------------------------------------------------------------ the graph against --no-compile (summary.json's checks)
step train_default_graph 120 -- $PY $TRAIN $TRAIN_SIZE --out "$WORK/runs/train_default_graph"
step train_default_eager 150 -- $PY $TRAIN $TRAIN_SIZE --no-compile --out "$WORK/runs/train_default_eager"
step train_iwae_eager 180 -- $PY $TRAIN --config $IWAE $IWAE_SIZE --no-compile --out "$WORK/runs/train_iwae_eager"

# ------------------------------------------------------------------ benchmarks (the graph vs the host-launched step)
step bench_train_default 120 -- $PY benchmarks/train_step.py --device $DEVICE \
  --variants trace trace+eager ${GRAPH:+trace+graph} --rounds 10 $BENCH_TRAIN --json "$WORK/bench_train_default.json"
step bench_train_iwae 120 -- $PY benchmarks/train_step.py --device $DEVICE --config $IWAE --batch-size 20 \
  --variants iwae iwae+eager ${GRAPH:+iwae+graph} --rounds 10 $BENCH_TRAIN --json "$WORK/bench_train_iwae.json"

# ------------------------------------------------------------------ optional: while time is left
# a short selection of the rest of the suite, to see that it passes on a GPU machine too (tests not
# marked cuda see no GPU: tests/conftest.py hides it): the device loop's tests and the two-rank tests
# of one step, one evaluation and the documented torchrun command (all of test_distributed.py takes minutes)
step tests_short 150 optional -- $PY -m pytest -q -p no:cacheprovider $SHORT_TESTS tests/training/test_graphed.py \
  tests/system/test_distributed.py::test_two_ranks_take_the_step_one_process_takes_on_the_whole_batch \
  tests/system/test_distributed.py::test_evaluation_on_two_ranks_equals_evaluation_on_one \
  tests/system/test_distributed.py::test_the_readme_command_trains_with_torchrun
step bench_eval 120 optional -- $PY benchmarks/evaluate.py --device $DEVICE \
  --run-dir "$WORK/runs/train_iwae_graph" --rounds 1 $BENCH_EVAL --json "$WORK/bench_eval.json"
step bench_ais 120 optional -- $PY benchmarks/ais.py --device $DEVICE \
  --run-dir "$WORK/runs/train_iwae_graph" --rounds 2 $BENCH_AIS --json "$WORK/bench_ais.json"

# ------------------------------------------------------------------ the summary, always
say "=== summary (at ${SECONDS} s)"
$PY benchmarks/gpu_check.py summarize "$WORK" "$OUT" >> "$LOG" 2>&1 || say "summary failed: see above"
tar -czf "$OUT/steps.tar.gz" -C "$WORK" --exclude='*.pt' --exclude='*.npz' --exclude=data --exclude=site \
  logs runs steps.tsv $(cd "$WORK" && ls -d eval_* bench_*.json 2>/dev/null)
say "gpu_check done in ${SECONDS} s: $OUT/all.log, summary.json, steps.tar.gz"
rm -rf "$WORK"
