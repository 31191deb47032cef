"""Import DeepNano-blitz R9.4.1 weights (MIT) as edgecall model packages.

``import_deepnano`` turns one ``rnnH.txt`` into a package (config, ONNX,
OpenVINO IR, weights.npz, LICENSE with attribution, provenance) and checks
that ONNX Runtime and OpenVINO give the torch module's probabilities.
``build_bundled_models`` regenerates the five packages shipped in
``edgecall/models`` from ``../shared/data``; ``tools/build_bundled_models.py``
calls it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edgecall.errors import EdgecallError
from edgecall.export.onnx_export import INPUT_NAME, export_onnx
from edgecall.export.package import PackageResult, write_package
from edgecall.model.checkpoint import sha256_of
from edgecall.model.deepnano import (
    CHUNKSIZE,
    DeepNanoBlitz,
    build_module,
    count_parameters,
    deepnano_config,
    flops_per_sample,
    hidden_size,
    parse_weights,
    to_state_dict,
)
from edgecall.package import BUNDLED_DIR, PROVENANCE_NAME

SOURCE_REPO = "https://github.com/fmfi-compbio/deepnano-blitz"
WIDTHS = (48, 56, 64, 80, 96)
TOLERANCE = 1e-4  # max |probability difference| accepted between backends

MIT_LICENSE = """\
Copyright (c) 2019 - 2020 Vladimir Boza "usamec", Peter Peresini (ppershing)

Permission is hereby granted, free of charge, to any
person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the
Software without restriction, including without
limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of
the Software, and to permit persons to whom the Software
is furnished to do so, subject to the following
conditions:

The above copyright notice and this permission notice
shall be included in all copies or substantial portions
of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF
ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED
TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A
PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT
SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION
OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR
IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
"""


def license_text(weights_name: str, digest: str, name: str) -> str:
    """MIT licence of the weights with a line saying where they came from."""
    return (
        f"The network weights in this package ({name}) are DeepNano-blitz's {weights_name}\n"
        f"from {SOURCE_REPO} (deepnano2/weights/{weights_name}, sha256 {digest}),\n"
        "converted to ONNX/OpenVINO by edgecall. They are distributed under the licence below.\n\n"
        + MIT_LICENSE
    )


def import_deepnano(
    weights_txt: Path,
    out_dir: Path,
    *,
    targets: Sequence[str] = ("CPU",),
    batchsize: int = 64,
) -> PackageResult:
    """Convert a DeepNano-blitz ``rnnH.txt`` into the package ``out_dir``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GRUs: one thread is fastest and does not collapse under CPU contention
    try:
        return _import(Path(weights_txt), Path(out_dir), targets, batchsize)
    finally:
        torch.set_num_threads(threads)


def _import(weights_txt: Path, out_dir: Path, targets: Sequence[str], batchsize: int) -> PackageResult:
    raw = parse_weights(weights_txt)
    hidden = hidden_size(raw)
    config = deepnano_config(hidden, batchsize=batchsize)
    state = to_state_dict(raw)
    model = build_module(config, state)
    digest = sha256_of(Path(weights_txt))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export_onnx(model, Path(tmp) / "model.onnx", stride=config.stride, example_samples=CHUNKSIZE)
        result = write_package(
            out_dir,
            config,
            onnx_file,
            targets=targets,
            weights=state,
            extra_files={"LICENSE": license_text(weights_txt.name, digest, config.name)},
        )
    diffs = verify_backends(model, result)
    provenance = {
        "source": {
            "repository": SOURCE_REPO,
            "file": f"deepnano2/weights/{weights_txt.name}",
            "sha256": digest,
            "license": "MIT",
        },
        "converted_by": "edgecall.export.deepnano.import_deepnano",
        "architecture": "deepnano-blitz",
        "hidden_size": hidden,
        "parameters": count_parameters(state),
        "flops_per_sample": round(flops_per_sample(hidden)),
        "output": "softmax probabilities (frames, batch, 5) over N A C G T, blank first, forward in time",
        "max_abs_diff_vs_torch": diffs,
        "torch": torch.__version__,
    }
    # written after the check, so the package records what was measured
    (result.path / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return result


def verify_backends(model: DeepNanoBlitz, result: PackageResult, *, seed: int = 0) -> dict[str, float]:
    """Max |p_backend - p_torch| on random signal (two lengths); fails above TOLERANCE."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    inputs = [rng.normal(size=(3, 1, CHUNKSIZE)).astype(np.float32), rng.normal(size=(2, 1, 903)).astype(np.float32)]
    session = ort.InferenceSession(str(result.path / "model.onnx"), providers=["CPUExecutionProvider"])
    runners = {"onnxruntime": lambda x: session.run(None, {INPUT_NAME: x})[0]}
    cpu_ir = next((ir.xml for ir in result.irs if ir.target == "CPU"), None)
    if cpu_ir is not None:
        import openvino as ov

        # f32 explicitly: on CPUs with bf16 hardware OpenVINO defaults to bf16 (~2e-2 off here)
        compiled = ov.Core().compile_model(str(cpu_ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runners["openvino_cpu"] = lambda x: compiled(x)[0]
    diffs: dict[str, float] = {}
    for name, run in runners.items():
        worst = 0.0
        for x in inputs:
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            got = np.asarray(run(x))
            if got.shape != expected.shape:
                raise EdgecallError(f"{result.path}: {name} output shape {got.shape}, torch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
        if worst > TOLERANCE:
            raise EdgecallError(f"{result.path}: {name} differs from torch by {worst:.2e} (> {TOLERANCE:g})")
        diffs[name] = float(f"{worst:.3g}")
    return diffs


def build_bundled_models(
    data_dir: Path, models_dir: Path = BUNDLED_DIR, widths: Sequence[int] = WIDTHS
) -> list[PackageResult]:
    """(Re)generate ``models_dir/deepnano-blitz-w{H}`` from ``data_dir/models/deepnano-blitz``."""
    weights_dir = Path(data_dir) / "models" / "deepnano-blitz" / "weights"
    results = []
    for width in widths:
        source = weights_dir / f"rnn{width}.txt"
        if not source.is_file():
            raise EdgecallError(f"{source}: no such DeepNano-blitz weights file")
        results.append(import_deepnano(source, Path(models_dir) / f"deepnano-blitz-w{width}"))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Import DeepNano-blitz weights as edgecall model packages.")
    parser.add_argument("data_dir", type=Path, help="shared data directory (holds models/deepnano-blitz)")
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR, help="where the packages go")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    args = parser.parse_args(argv)
    try:
        for result in build_bundled_models(args.data_dir, args.out, args.widths):
            size = sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file())
            print(f"{result.path}  {size / 1e6:.2f} MB", file=sys.stderr)
    except EdgecallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
