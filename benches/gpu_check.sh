#!/usr/bin/env bash
# The real-GPU check in one short run: every kernel against the CPU reference first, then timings.
#
#   benches/gpu_check.sh prepare DIR   # here, with cargo: stripped, gzipped binaries (and Fashion-MNIST
#                                      # when installed) in DIR, small enough to carry to a GPU machine
#   benches/gpu_check.sh run DIR OUT   # on the GPU machine, from the repository root: no cargo needed;
#                                      # logs, JSON reports and run directories in OUT/gpu-check.tgz
#
# The run needs the CUDA driver, and python3 with torch and torchvision for the PyTorch reference;
# cuBLAS (the kernel bench's reference) is taken from the nvidia wheels beside that PyTorch when the
# loader finds none. Each step has its own limit and the whole run a deadline (GPU_CHECK_DEADLINE,
# seconds, default 400), so whatever ran comes back. benches/RESULTS.md says what to record.
set -u

prepare() {
    local dir=$1
    mkdir -p "$dir/bin"
    cargo build --release --bins || exit
    cargo bench --bench kernels --no-run || exit
    # Test and bench executables by target name, as cargo reports them.
    { cargo test --release --no-run --message-format=json; cargo bench --bench kernels --no-run --message-format=json; } 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do
            case $name in ferronet|ops|exec|models|kernels) cp "$exe" "$dir/bin/$name" && strip "$dir/bin/$name" && gzip -9f "$dir/bin/$name" ;; esac
        done
    local fm=/usr/share/datasets/fashion-mnist
    [ -d $fm ] && mkdir -p "$dir/fmnist" && cp $fm/* "$dir/fmnist/"
    cp "$0" "$dir/gpu_check.sh"
    du -sh "$dir"
}

run() {
    local dir out logs start deadline
    dir=$(cd "$1" && pwd) out=$2 logs=/tmp/gpu-check start=$(date +%s) deadline=${GPU_CHECK_DEADLINE:-400}
    local bin=$dir/bin
    mkdir -p "$logs" "$out"
    for f in "$bin"/*.gz; do [ -e "$f" ] && gunzip -f "$f"; done
    chmod +x "$bin"/*
    export RUST_BACKTRACE=1 PYTHONUNBUFFERED=1
    # Test binaries find their fixtures through the path they were built at.
    local built_at=/work/main
    [ -e $built_at ] || { mkdir -p "$(dirname $built_at)" && ln -s "$PWD" $built_at; }
    step() {
        local name=$1 limit=$2 left t0 rc
        shift 2
        left=$((deadline - ($(date +%s) - start)))
        if [ $left -lt 10 ]; then echo "== $name skipped: the run's deadline is near"; return; fi
        [ "$limit" -gt $left ] && limit=$left
        t0=$(date +%s%N)
        timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1
        rc=$?
        echo "== $name rc=$rc $((($(date +%s%N) - t0) / 1000000)) ms"
        tail -n "${TAILN:-6}" "$logs/$name.log" | cut -c1-300
    }
    local cublas
    cublas=$(python3 -c '
import glob, os, nvidia
hits = [f for base in nvidia.__path__ for f in glob.glob(os.path.join(base, "**", "libcublas.so.*"), recursive=True)]
print(os.path.dirname(hits[0]) if hits else "")' 2>/dev/null)
    if [ -n "$cublas" ]; then
        mkdir -p /tmp/gpu-check-libs
        ln -sf "$(ls "$cublas"/libcublas.so.* | head -1)" /tmp/gpu-check-libs/libcublas.so
        export LD_LIBRARY_PATH=/tmp/gpu-check-libs:$cublas:${LD_LIBRARY_PATH:-}
    fi
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv,noheader
    local f=$bin/ferronet ref=benches/pytorch_reference.py
    step devices 30 "$f" devices
    step gradcheck 70 "$f" gradcheck --op all --device cuda --json
    step pytorch_resnet18_cifar 60 python3 $ref --model resnet18 --input 3,32,32 --batch 128 --classes 10 --device cuda --ferronet "$f" --json
    step pytorch_resnet18_224 60 python3 $ref --model resnet18 --input 3,224,224 --batch 64 --device cuda --ferronet "$f" --json
    step pytorch_mobilenet_v2 60 python3 $ref --model mobilenet_v2 --input 3,224,224 --batch 64 --device cuda --ferronet "$f" --json
    step bench_resnet18_cifar_stem 40 "$f" bench --model resnet18 --cifar-stem --input 3,32,32 --batch 128 --classes 10 --device cuda
    TAILN=3 step ops_tests 90 env FERRONET_TEST_GPU=cuda "$bin/ops" gpu_ --skip emulated --test-threads 16
    TAILN=3 step exec_tests 60 env FERRONET_TEST_GPU=cuda "$bin/exec" --skip emulated --test-threads 16
    TAILN=3 step models_tests 60 env FERRONET_TEST_GPU=cuda "$bin/models" models_sim --skip emulated --test-threads 16
    step kernels 100 "$bin/kernels" --device cuda --json "$logs/kernels_cuda.json"
    if [ -d "$dir/fmnist" ]; then
        step fashion_mnist 90 "$f" train --dataset fashion-mnist --data-dir "$dir/fmnist" --epochs 2 --optimizer adam \
            --lr 0.002 --scheduler step --step-size 1 --gamma 0.1 --dropout 0.1 --device cuda --quiet --out "$logs/fashion_mnist"
    fi
    # The same run on both devices: their histories must agree to f32 rounding.
    step synthetic_cuda 40 "$f" train --device cuda --epochs 2 --seed 1 --quiet --out "$logs/synthetic_cuda"
    step synthetic_cpu 40 "$f" train --device cpu --epochs 2 --seed 1 --quiet --out "$logs/synthetic_cpu"
    for r in fashion_mnist synthetic_cuda synthetic_cpu; do
        [ -f "$logs/$r/history.csv" ] && { echo "-- $r"; cut -c1-200 "$logs/$r/history.csv"; }
    done
    tar czf "$out/gpu-check.tgz" -C "$(dirname $logs)" "$(basename $logs)"
    echo "total $(($(date +%s) - start)) s"
}

case "${1:-}" in
prepare) [ $# -eq 2 ] || { echo "usage: $0 prepare DIR" >&2; exit 2; }; prepare "$2" ;;
run) [ $# -eq 3 ] || { echo "usage: $0 run DIR OUT" >&2; exit 2; }; run "$2" "$3" ;;
*) echo "usage: $0 prepare DIR | run DIR OUT" >&2; exit 2 ;;
esac
