"""DeepNano-blitz import: weights, network equations, backends, CTC decoding, real reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from alignment import identity  # noqa: E402
from ctc_reference import exhaustive_best, reference_beam_search  # noqa: E402

from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.deepnano import MIT_LICENSE, import_deepnano  # noqa: E402
from edgecall.model.deepnano import (  # noqa: E402
    GRU_TENSORS,
    build_module,
    deepnano_config,
    parse_weights,
    tensor_shapes,
    to_state_dict,
)
from edgecall.package import bundled_models, load_package  # noqa: E402
from edgecall.runtime.decode.ctc import beam_search, greedy, qchars  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEEPNANO = DATA / "models" / "deepnano-blitz"
needs_data = pytest.mark.skipif(not DEEPNANO.is_dir(), reason="../shared/data/models/deepnano-blitz is absent")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny GRUs run fastest on one thread, and eager torch collapses under CPU contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_weights(path: Path, hidden: int, seed: int = 0, scale: float = 0.3) -> dict[str, np.ndarray]:
    """A random DeepNano-blitz text file (shape line, value line per tensor)."""
    rng = np.random.default_rng(seed)
    arrays = {n: (rng.normal(size=s) * scale).astype(np.float32) for n, s in tensor_shapes(hidden).items()}
    lines = []
    for a in arrays.values():
        lines += [" ".join(str(d) for d in a.shape), " ".join(f"{v:.6f}" for v in a.ravel())]
    path.write_text("\n".join(lines) + "\n")
    return parse_weights(path)


# ---- weights ---------------------------------------------------------------------


def test_parse_synthetic_shapes(tmp_path: Path) -> None:
    w = write_weights(tmp_path / "rnn8.txt", 8)
    assert list(w) == list(tensor_shapes(8))
    assert w["conv.w"].shape == (66, 8) and w["gru3.bou"].shape == (8,) and w["out.w"].shape == (8, 5)
    assert all(a.dtype == np.float32 for a in w.values())


@pytest.mark.parametrize("damage", ["truncate", "short_line", "bad_shape", "empty"])
def test_malformed_weights_name_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "rnn8.txt"
    write_weights(path, 8)
    lines = path.read_text().splitlines()
    if damage == "truncate":
        lines = lines[:57]
    elif damage == "short_line":
        lines[9] = " ".join(lines[9].split()[:-3])
    elif damage == "bad_shape":
        lines[4] = "8 9"
    else:
        lines = []
    path.write_text("\n".join(lines))
    with pytest.raises(EdgecallError, match="rnn8.txt"):
        parse_weights(path)


@needs_data
@pytest.mark.parametrize("width", [48, 56, 64, 80, 96])
def test_parse_released_weights(width: int) -> None:
    w = parse_weights(DEEPNANO / "weights" / f"rnn{width}.txt")
    assert w["conv.w"].shape == (66, width) and len(w) == 2 + 4 * 12 + 2


@needs_data
def test_embedded_licence_is_the_upstream_text() -> None:
    assert MIT_LICENSE.strip() == (DEEPNANO / "LICENSE").read_text().strip()


# ---- network equations -------------------------------------------------------------


def rust_forward(w: dict[str, np.ndarray], chunk: np.ndarray) -> np.ndarray:
    """DeepNano-blitz's forward pass written the way src/conv_layer.rs and gru_layer.rs do it."""
    hidden = w["conv.b"].shape[0]
    x = np.clip(chunk, -2.5, 2.5)
    feats = np.zeros((len(x) + 32, 2), np.float64)
    feats[16:-16] = np.stack([x, x * x], 1)
    im2col = np.stack([feats[r : r + 33].reshape(-1) for r in range(len(x))])  # row r, col 2j+f
    conv = im2col @ w["conv.w"]
    h_in = np.tanh(conv[: len(x) // 3 * 3].reshape(-1, 3, hidden).max(1) + w["conv.b"])
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    for i in range(4):
        g = {n: w[f"gru{i}.{n}"].astype(np.float64) for n in GRU_TENSORS}
        out, h = np.zeros_like(h_in), np.zeros(hidden)
        for t, xt in enumerate(h_in):
            u = sigmoid(xt @ g["wiu"] + g["biu"] + h @ g["wou"] + g["bou"])
            r = sigmoid(xt @ g["wir"] + g["bir"] + h @ g["wor"] + g["bor"])
            n = np.tanh(xt @ g["wio"] + g["bio"] + r * (h @ g["woo"] + g["boo"]))
            h = u * h + (1 - u) * n
            out[len(h_in) - 1 - t] = h  # each layer writes its output time-reversed
        h_in = out
    logits = h_in @ w["out.w"] + w["out.b"]
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def test_torch_module_matches_rust_equations(tmp_path: Path) -> None:
    w = write_weights(tmp_path / "rnn8.txt", 8, seed=3, scale=0.5)
    model = build_module(deepnano_config(8), to_state_dict(w))
    chunk = np.random.default_rng(1).normal(size=153).astype(np.float32) * 1.5
    with torch.no_grad():
        got = model(torch.from_numpy(chunk)[None, None])[:, 0].numpy()
    assert got.shape == (51, 5)
    np.testing.assert_allclose(got, rust_forward(w, chunk), atol=2e-6)


# ---- backends ----------------------------------------------------------------------


def backend_outputs(package_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    import openvino as ov

    package = load_package(package_dir)
    model = build_module(package.config, package.weights())
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(package.openvino_ir("CPU")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return {"torch": ref, "onnxruntime": session.run(None, {"signal": x})[0], "openvino": compiled(x)[0]}


def test_import_writes_a_consistent_package(tmp_path: Path) -> None:
    src = tmp_path / "rnn8.txt"
    write_weights(src, 8, seed=5)
    result = import_deepnano(src, tmp_path / "pkg")
    package = load_package(result.path)
    assert package.config == deepnano_config(8)
    assert package.config.decoder.kind == "ctc" and package.config.decoder.reverse
    assert not package.config.normalisation.trim
    licence = (result.path / "LICENSE").read_text()
    assert "rnn8.txt" in licence and "Permission is hereby granted" in licence
    prov = package.provenance
    assert prov["hidden_size"] == 8 and prov["parameters"] == sum(v.size for v in package.weights().values())
    x = np.random.default_rng(2).normal(size=(3, 1, 1560)).astype(np.float32)
    outs = backend_outputs(result.path, x)
    assert outs["torch"].shape == (520, 3, 5)
    for name in ("onnxruntime", "openvino"):
        assert np.abs(outs[name] - outs["torch"]).max() <= 1e-4, name


@pytest.mark.parametrize("name", [f"deepnano-blitz-w{w}" for w in (48, 56, 64, 80, 96)])
def test_bundled_package_backends_agree(name: str) -> None:
    if name not in bundled_models():
        pytest.skip(f"{name} is not bundled (run tools/build_bundled_models.py)")
    x = np.random.default_rng(7).normal(size=(2, 1, 999)).astype(np.float32)
    outs = backend_outputs(load_package(name).path, x)
    assert outs["torch"].shape == (333, 2, 5)
    np.testing.assert_allclose(outs["torch"].sum(-1), 1.0, atol=1e-5)  # probabilities
    for key in ("onnxruntime", "openvino"):
        assert np.abs(outs[key] - outs["torch"]).max() <= 1e-4, key


def test_runtime_decoder_does_not_need_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import edgecall.runtime.decode.ctc"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---- CTC decoding ------------------------------------------------------------------


def check_moves(decoded, frames: int) -> None:
    assert decoded.moves.dtype == np.uint8 and decoded.moves.shape == (frames,)
    assert int(decoded.moves.sum()) == len(decoded.sequence) == len(decoded.qstring)


@pytest.mark.parametrize("seed", range(40))
def test_beam_search_follows_deepnano_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    post = rng.dirichlet([0.3] * 5, size=int(rng.integers(1, 120))).astype(np.float32)
    for width, cut in [(5, 0.1), (1, 0.1), (3, 0.0), (12, 0.05)]:
        decoded = beam_search(post, beam_width=width, beam_cut=cut)
        sequence, probs = reference_beam_search(post, width, cut)
        assert decoded.sequence == sequence
        assert decoded.qstring == qchars(np.array(probs, np.float32))
        check_moves(decoded, len(post))


@pytest.mark.parametrize("seed", range(25))
def test_decoders_match_exhaustive_search(seed: int) -> None:
    post = np.random.default_rng(100 + seed).dirichlet([0.5] * 5, size=6).astype(np.float32)
    best_labelling, best_path = exhaustive_best(post)
    wide = beam_search(post, beam_width=100_000, beam_cut=0.0)  # nothing pruned: exact prefix sums
    assert wide.sequence == best_labelling
    assert beam_search(post, beam_width=100_000, beam_cut=0.0, reverse=False).sequence == best_labelling
    g = greedy(post)
    assert g.sequence == best_path
    check_moves(wide, 6)
    check_moves(g, 6)


def test_decoder_edge_cases() -> None:
    assert beam_search(np.zeros((0, 5), np.float32)).sequence == greedy(np.zeros((0, 5), np.float32)).sequence == ""
    blank = np.tile(np.array([0.96, 0.01, 0.01, 0.01, 0.01], np.float32), (7, 1))
    assert beam_search(blank).sequence == "" and greedy(blank).sequence == ""
    one_hot = np.eye(5, dtype=np.float32)[[1, 1, 0, 1, 3, 3, 4]] * 0.96 + 0.008
    for decoded in (beam_search(one_hot), greedy(one_hot)):
        assert decoded.sequence == "AAGT"
        check_moves(decoded, 7)
    assert qchars(np.array([0.0, 0.5, 0.95, 0.995, 1.0], np.float32)) == "!$." + chr(33 + 23) + chr(33 + 93)
    with pytest.raises(EdgecallError):
        beam_search(np.zeros((4, 6), np.float32))


# ---- real reads --------------------------------------------------------------------

E2E_READS = 6  # the six shortest reads keep this under a few seconds


def read_signal(path: Path) -> tuple[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        read = next(iter(f["Raw/Reads"].values()))
        return read.attrs["read_id"].decode(), read["Signal"][:]


def call_like_deepnano(session, raw: np.ndarray) -> np.ndarray:
    """med/MAD, chunks of 1560 every 1500 while they fit, keep frames [10:510] ([0:510] first)."""
    x = raw.astype(np.float32)
    med = np.median(x)
    x = (x - med) / (1.4826 * np.median(np.abs(x - med)))
    starts = range(0, len(x) - 1560, 1500)  # DeepNano-blitz drops the tail after the last full chunk
    out = session.run(None, {"signal": np.stack([x[s : s + 1560] for s in starts])[:, None]})[0]
    return np.concatenate([out[(10 if k else 0) : 510, k] for k in range(len(starts))])


@needs_data
def test_real_reads_match_deepnano_blitz_output() -> None:
    import onnxruntime as ort

    if "deepnano-blitz-w64" not in bundled_models():
        pytest.skip("deepnano-blitz-w64 is not bundled")
    lines = (DEEPNANO / "test_sample" / "expected.fastq").read_text().splitlines()
    expected = {lines[i][1:].split()[0]: lines[i + 1] for i in range(0, len(lines) - 3, 4)}
    files = sorted((DEEPNANO / "test_sample").glob("*.fast5"), key=lambda p: p.stat().st_size)[:E2E_READS]
    session = ort.InferenceSession(str(load_package("deepnano-blitz-w64").onnx_path), providers=["CPUExecutionProvider"])
    identities = []
    for path in files:
        read_id, raw = read_signal(path)
        posteriors = call_like_deepnano(session, raw)
        decoded = beam_search(posteriors, beam_width=5, beam_cut=0.1, reverse=True)
        check_moves(decoded, len(posteriors))
        identities.append(identity(decoded.sequence, expected[read_id]))
    assert np.median(identities) >= 0.99, identities
