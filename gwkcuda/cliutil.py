"""What the command line and the demo share: the user-error type, the device choice, the plain-text
table, the argparse types of checked numbers and the atomic JSON writer (a module of its own, so that cli.py and demo.py do not import
each other)."""
import argparse
import json
import math
import os

import torch

from . import io


class UserError(Exception):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; "cuda" without a GPU is a UserError."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible (use --device cpu)")
    return name


def format_table(headers, rows) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path, obj) -> None:
    """Atomic: a temporary file in the same folder, fsync'ed, then renamed over ``path``."""
    io.atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_result(path, obj) -> None:
    """write_json, creating the folder first: a benchmark's results file (bench/results/...). The
    CLI instead refuses a missing folder before any work (it may be a typo)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json(path, obj)


def count_arg(low: int, high: int = None):
    """argparse type: an int in [low, high], refused with what was expected and what was given."""
    expected = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value
    return parse


def number_arg(low: float, strict: bool, high: float = None):
    """argparse type: a finite float > low (strict) or >= low, and <= high if given; NaN and
    infinities are refused (an infinite learning rate trains to NaN weights, a NaN budget compares
    false with everything)."""
    expected = f"a finite number {'>' if strict else '>='} {low:g}" if high is None else (
        f"a number in {'(' if strict else '['}{low:g}, {high:g}]")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if (not math.isfinite(value) or value < low or (strict and value == low)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


positive_arg = number_arg(0.0, strict=True)  # learning rates
non_negative_arg = number_arg(0.0, strict=False)  # budgets, beta, delta
