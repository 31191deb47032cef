#!/usr/bin/env bash
# Check that a MYRIAD IR written by `edgecall compile --target MYRIAD` loads in
# OpenVINO 2022.3 LTS (the last release with the MYRIAD plugin, Python <= 3.10).
# Without a stick it compiles and runs the IR on the CPU plugin instead.
#   tools/check_myriad_ir.sh PACKAGE_DIR [python3.10]
set -euo pipefail
pkg="$1"; py="${2:-python3.10}"
venv="$(mktemp -d)/ov2022"
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet 'openvino==2022.3.2' 'numpy<1.25'
"$venv/bin/python" - "$pkg/openvino/MYRIAD/model.xml" <<'PY'
import sys
import numpy as np
from openvino.runtime import Core
core = Core()
model = core.read_model(sys.argv[1])
shape = [d.get_length() for d in model.inputs[0].get_partial_shape()]
device = "MYRIAD" if "MYRIAD" in core.available_devices else "CPU"
out = core.compile_model(model, device).create_infer_request().infer({0: np.zeros(shape, np.float32)})
print(f"OpenVINO 2022.3 read {sys.argv[1]} (static input {shape}) and ran it on {device}: output {next(iter(out.values())).shape}")
PY
