#!/usr/bin/env python3
"""ferronet against PyTorch on the same model, batch, input and machine.

Runs one torchvision model in PyTorch (SGD training steps and inference, CUDA events on a GPU,
warm-up, median of the timed steps), then `ferronet bench ... --json` for the same
configuration, and prints ferronet's throughput as a ratio of PyTorch's.

PyTorch is not a dependency of ferronet. Install it only to run this comparison:

    pip install torch torchvision      # see https://pytorch.org/get-started/locally/ for CUDA builds

Example (from the repository root, after `cargo build --release`):

    python3 benches/pytorch_reference.py --model resnet18 --input 3,224,224 --batch 64 --device cuda
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

# ferronet zoo names that are torchvision model builders of the same name and architecture.
TORCHVISION_MODELS = (
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50",
    "mobilenet_v2",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "inception_v3",
    "googlenet",
    "efficientnet_b0",
)
# The auxiliary classifiers' loss weight, as ferronet's inception_v3 and googlenet use it.
AUX_LOSS_WEIGHT = 0.3
INSTALL_HINT = (
    "PyTorch is not installed; install it with `pip install torch torchvision` "
    "(https://pytorch.org/get-started/locally/ lists the CUDA builds)"
)


class UsageError(Exception):
    """A bad flag or an unusable environment: reported as one line, exit status 2."""


def parse_input(text):
    """'C,H,W' -> (C, H, W), three positive integers."""
    try:
        dims = tuple(int(part.strip()) for part in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise UsageError(f"--input `{text}` must be three positive numbers C,H,W, e.g. 3,224,224")
    return dims


def parse_args(argv):
    p = argparse.ArgumentParser(description="ferronet's training and inference speed as a ratio of PyTorch's")
    p.add_argument("--model", required=True, help="torchvision name: " + ", ".join(TORCHVISION_MODELS))
    p.add_argument("--input", default="3,224,224", help="C,H,W (default 3,224,224; inception_v3 needs 3,299,299)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (both frameworks run there)")
    p.add_argument("--ferronet", default="target/release/ferronet", help="path of the ferronet binary")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = p.parse_args(argv)
    if args.model not in TORCHVISION_MODELS:
        raise UsageError(f"--model `{args.model}` is not a torchvision model ferronet also has; use one of: "
                         + ", ".join(TORCHVISION_MODELS))
    args.input = parse_input(args.input)
    for name in ("batch", "classes", "steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must be at least 0")
    if args.device != "cpu" and args.device != "cuda" and not args.device.startswith("cuda:"):
        raise UsageError(f"--device `{args.device}` must be cpu, cuda or cuda:N")
    return args


def ferronet_command(args):
    """The `ferronet bench` invocation for the same configuration."""
    return [
        args.ferronet, "bench",
        "--model", args.model,
        "--input", ",".join(str(d) for d in args.input),
        "--batch", str(args.batch),
        "--classes", str(args.classes),
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--lr", str(args.lr),
        "--momentum", str(args.momentum),
        "--device", args.device,
        "--json",
    ]


def run_ferronet(args):
    cmd = ferronet_command(args)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UsageError(f"no ferronet binary at {args.ferronet}; run `cargo build --release` or pass --ferronet PATH")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UsageError(f"`{' '.join(cmd)}` failed: {last}")
    return json.loads(done.stdout)


def ratios(torch_report, ferronet_report):
    """ferronet's speed over PyTorch's (>1: ferronet is faster) and its peak memory over PyTorch's."""
    def over(key):
        # None where PyTorch reports nothing to compare with (no peak memory on the CPU).
        den = torch_report[key]
        return ferronet_report[key] / den if den else None
    return {
        "train_speed": over("train_images_per_s"),
        "inference_speed": over("inference_images_per_s"),
        "train_peak_memory": over("peak_train_bytes"),
    }


def format_comparison(torch_report, ferronet_report, r):
    rows = [
        ("", "PyTorch", "ferronet", "ferronet / PyTorch"),
        ("training images/s", f"{torch_report['train_images_per_s']:.1f}",
         f"{ferronet_report['train_images_per_s']:.1f}", f"{r['train_speed']:.2f}x"),
        ("inference images/s", f"{torch_report['inference_images_per_s']:.1f}",
         f"{ferronet_report['inference_images_per_s']:.1f}", f"{r['inference_speed']:.2f}x"),
        ("peak training MiB", f"{torch_report['peak_train_bytes'] / 2**20:.0f}",
         f"{ferronet_report['peak_train_bytes'] / 2**20:.0f}",
         "n/a" if r["train_peak_memory"] is None else f"{r['train_peak_memory']:.2f}x"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(lines)


def import_torch():
    try:
        import torch
        import torchvision
    except ImportError:
        raise UsageError(INSTALL_HINT)
    return torch, torchvision


def run_torch(args):
    """PyTorch's training and inference throughput: median of timed steps after warm-up."""
    torch, torchvision = import_torch()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("PyTorch sees no CUDA device; use --device cpu or install a CUDA build of PyTorch")
    # fp32 throughout, as ferronet computes: no TF32 tensor cores for matmuls or convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    builder = getattr(torchvision.models, args.model)
    extra = {"aux_logits": True, "init_weights": True} if args.model in ("inception_v3", "googlenet") else {}
    model = builder(weights=None, num_classes=args.classes, **extra).to(device)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((args.batch,) + args.input, generator=gen) * 2 - 1).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if isinstance(out, tuple):  # InceptionOutputs / GoogLeNetOutputs: main logits, then aux
            loss = loss_fn(out[0], y) + sum(AUX_LOSS_WEIGHT * loss_fn(aux, y) for aux in out[1:] if aux is not None)
        else:
            loss = loss_fn(out, y)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    def timed(step):
        for _ in range(args.warmup):
            step()
        samples = []
        for _ in range(args.steps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                step()
                samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    train_s = timed(train_step)
    peak_train = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    model.eval()
    infer_s = timed(infer)
    return {
        "model": args.model,
        "device": str(device),
        "torch_version": torch.__version__,
        "train_images_per_s": args.batch / train_s,
        "inference_images_per_s": args.batch / infer_s,
        "peak_train_bytes": peak_train,
    }


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        torch_report = run_torch(args)
        ferronet_report = run_ferronet(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    r = ratios(torch_report, ferronet_report)
    if args.json:
        print(json.dumps({"pytorch": torch_report, "ferronet": ferronet_report, "ratios": r}, indent=2))
    else:
        print(f"{args.model}, batch {args.batch}, input {args.input}, {args.device}, "
              f"median of {args.steps} steps after {args.warmup} warm-up")
        print(format_comparison(torch_report, ferronet_report, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
