"""The parts of pytorch_reference.py that need no PyTorch: flags, the ferronet command, ratios,
the comparison table, and the clear failure without PyTorch.

    python3 -m unittest discover -s benches -p 'test_pytorch_reference.py'
"""

import contextlib
import io
import os
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_reference as ref  # noqa: E402

TORCH = {"train_images_per_s": 200.0, "inference_images_per_s": 800.0, "peak_train_bytes": 4 << 30}
FERRONET = {"train_images_per_s": 100.0, "inference_images_per_s": 1000.0, "peak_train_bytes": 2 << 30}


class Flags(unittest.TestCase):
    def test_defaults_and_input(self):
        a = ref.parse_args(["--model", "resnet18", "--input", "3, 32,32"])
        self.assertEqual((a.input, a.batch, a.classes, a.device), ((3, 32, 32), 32, 1000, "cuda"))

    def test_bad_flags_are_usage_errors(self):
        for argv, expect in [
            (["--model", "small_cnn"], "not a torchvision model"),
            (["--model", "resnet18", "--input", "3,32"], "three positive numbers"),
            (["--model", "resnet18", "--input", "3,0,32"], "three positive numbers"),
            (["--model", "resnet18", "--batch", "0"], "--batch must be at least 1"),
            (["--model", "resnet18", "--warmup", "-1"], "--warmup must be at least 0"),
            (["--model", "resnet18", "--device", "tpu"], "must be cpu, cuda or cuda:N"),
        ]:
            with self.assertRaises(ref.UsageError) as caught:
                ref.parse_args(argv)
            self.assertIn(expect, str(caught.exception), argv)

    def test_ferronet_runs_the_same_configuration(self):
        a = ref.parse_args(["--model", "mobilenet_v2", "--batch", "8", "--device", "cuda:1", "--steps", "3"])
        cmd = ref.ferronet_command(a)
        self.assertEqual(cmd[:4], ["target/release/ferronet", "bench", "--model", "mobilenet_v2"])
        flags = dict(zip(cmd[2::2], cmd[3::2]))
        self.assertEqual((flags["--input"], flags["--batch"], flags["--device"], flags["--steps"]), ("3,224,224", "8", "cuda:1", "3"))
        self.assertEqual(cmd[-1], "--json")


class Ratios(unittest.TestCase):
    def test_ratios_are_ferronet_over_pytorch(self):
        r = ref.ratios(TORCH, FERRONET)
        self.assertEqual(r, {"train_speed": 0.5, "inference_speed": 1.25, "train_peak_memory": 0.5})
        table = ref.format_comparison(TORCH, FERRONET, r)
        self.assertIn("0.50x", table)
        self.assertIn("1.25x", table)

    def test_no_peak_memory_on_the_cpu_is_not_a_ratio(self):
        r = ref.ratios(dict(TORCH, peak_train_bytes=0), FERRONET)
        self.assertIsNone(r["train_peak_memory"])
        self.assertIn("n/a", ref.format_comparison(dict(TORCH, peak_train_bytes=0), FERRONET, r))


class WithoutTorch(unittest.TestCase):
    def test_fails_with_the_install_hint(self):
        stderr = io.StringIO()
        # A None entry in sys.modules makes `import torch` raise ImportError, torch installed or not.
        with mock.patch.dict(sys.modules, {"torch": None}), contextlib.redirect_stderr(stderr):
            code = ref.main(["--model", "resnet18"])
        self.assertEqual(code, 2)
        self.assertIn("pip install torch torchvision", stderr.getvalue())
        self.assertEqual(len(stderr.getvalue().strip().splitlines()), 1)

    def test_a_missing_ferronet_binary_is_a_usage_error(self):
        a = ref.parse_args(["--model", "resnet18", "--ferronet", "/nonexistent/ferronet"])
        with self.assertRaises(ref.UsageError) as caught:
            ref.run_ferronet(a)
        self.assertIn("cargo build --release", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
