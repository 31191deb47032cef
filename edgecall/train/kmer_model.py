"""Pore models: the expected current of every k-mer, for simulating signal.

R9.4.1: ONT's legacy R9.4 450 b/s 6-mer template model
(nanoporetech/kmer_models ``legacy/legacy_r9.4_180mv_450bps_6mer/template_median68pA.model``,
MPL-2.0; a copy ships in ``edgecall/train/data`` with its licence, so an installed
edgecall works without ``../shared``). Files with the columns ``kmer``,
``level_mean``, ``level_stdv``, ``sd_mean`` load (ONT legacy and nanopolish
``.model`` files, ``#`` comment lines allowed).

Which base a k-mer's current belongs to: k-mers are written in sequencing
direction, so the levels along a read are ``model[seq[j:j+k]]`` for consecutive
j. Which base of the k-mer sets the level is read off the model itself:
:func:`dominant_position` finds the position whose base explains most of the
variance of ``level_mean``. For the R9.4 6-mer model that is position 2
(0-based, the third base: 74% of the variance; position 3 explains 10%, the
others < 4%). Real reads agree: the per-base means of tombo's resquiggle stored
in the accuracy/lambda_r941 fast5s correlate 0.975 with ``model[seq[i-2:i+4]]``
and |r| < 0.18 with the k-mer shifted by any other amount. So the simulator gives
base i the level ``model[seq[i-2:i+4]]`` and places base i's samples there, as a
basecaller's move table would.

R10.4.1: the 9-mer table of Uncalled4 4.1.0 (``dna_r10.4.1_400bps_9mer.npz``, MIT,
Sam Kovaka 2023), packed by ``tools/pack_uncalled4_table.py`` into
``edgecall/train/data`` (uint16 fixed point, the licence beside it). Its levels
are in normalised units; the file's metadata converts them: pA = x * 23.11 +
92.56 (``pa_stdv``, ``pa_mean``), close to real R10.4.1 reads here (the
remora reads' median 86-110 pA and quantile scale 26-29.5 pA need a per-read
scale of 0.91 and shift of +5.5 pA on it, see :mod:`edgecall.train.chemistry`). Its ``shift`` is 6, the base that sets the level most
(63% of the variance; position 5 explains 14%), and the reads' move tables
agree: the per-base means of the 8 simplex remora reads correlate best
(r 0.81-0.88) with ``model[seq[i-6:i+3]]``. Both ``.npz`` layouts load
(Uncalled4's own and the packed one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecall.errors import EdgecallError

BASES = "ACGT"
PACKAGED_MODEL = Path(__file__).resolve().parent / "data" / "r9.4_450bps_6mer_template.model"
SHARED_MODEL = Path("kmer_models/ont/legacy/legacy_r9.4_180mv_450bps_6mer/template_median68pA.model")
R10_PACKAGED_MODEL = Path(__file__).resolve().parent / "data" / "r10.4.1_400bps_9mer.npz"
PACKED_COLUMNS = ("level_mean", "level_stdv", "sd_mean")  # the packed .npz's columns, in normalised units
REQUIRED_COLUMNS = ("kmer", "level_mean", "level_stdv", "sd_mean")

# ASCII -> base code (A=0, C=1, G=2, T=3, lower case too); anything else -> 4
_CODES = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(BASES):
    _CODES[ord(_b)] = _CODES[ord(_b.lower())] = _i


@dataclass(frozen=True, eq=False)
class KmerModel:
    """Per-k-mer current statistics in pA, indexed by the k-mer's base-4 number."""

    k: int  # k-mer length
    level_mean: np.ndarray  # (4**k,) float64 pA; index = sum(code[j] * 4**(k-1-j)), A=0 C=1 G=2 T=3
    level_stdv: np.ndarray  # (4**k,) float64 pA; spread of event means of this k-mer
    sd_mean: np.ndarray  # (4**k,) float64 pA; mean within-event (per-sample) noise
    centre: int  # k-mer position whose base sets the level most (see module doc)
    source: str  # where it was loaded from

    def kmer_index(self, codes: np.ndarray) -> np.ndarray:
        """(n,) base codes 0..3 -> (n-k+1,) int64 index of the k-mer starting at each position."""
        windows = np.lib.stride_tricks.sliding_window_view(codes.astype(np.int64), self.k)
        return windows @ (4 ** np.arange(self.k - 1, -1, -1, dtype=np.int64))


def encode(sequence: str) -> np.ndarray:
    """ACGT (any case) -> (n,) uint8 codes 0..3; other characters -> 4."""
    return _CODES[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]


def dominant_position(level_mean: np.ndarray, k: int) -> int:
    """The k-mer position whose base explains most of the variance of the levels."""
    codes = (np.arange(4**k)[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
    explained = [np.var([level_mean[codes[:, p] == b].mean() for b in range(4)]) for p in range(k)]
    return int(np.argmax(explained))


def default_kmer_model_path() -> Path:
    """The shared-data copy beside a source checkout if there, else the packaged (identical) copy."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / SHARED_MODEL
    return shared if shared.is_file() else PACKAGED_MODEL


def load_kmer_model(path: Path | str | None = None) -> KmerModel:
    """Read a pore model (tab-separated, or Uncalled4 / packed .npz); every one of the 4**k k-mers once."""
    path = Path(path) if path is not None else default_kmer_model_path()
    if path.suffix == ".npz":
        return _load_npz(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        raise EdgecallError(f"{path}: no such k-mer model file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecallError(f"{path}: cannot read the k-mer model ({exc})") from None
    if not lines or any(c not in lines[0] for c in REQUIRED_COLUMNS):
        raise EdgecallError(f"{path}: not a k-mer model (needs a header with columns {', '.join(REQUIRED_COLUMNS)})")
    cols = [lines[0].index(c) for c in REQUIRED_COLUMNS]
    rows = lines[1:]
    k = len(rows[0][cols[0]]) if rows else 0
    if not 1 <= k <= 12 or len(rows) != 4**k:
        raise EdgecallError(f"{path}: expected 4^k rows of k-mers, got {len(rows)} rows of {k}-mers")
    table = np.full((4**k, 3), np.nan)
    weights = 4 ** np.arange(k - 1, -1, -1)
    try:
        for row in rows:
            codes = encode(row[cols[0]])
            if len(codes) != k or codes.max() > 3:
                raise ValueError(f"bad k-mer '{row[cols[0]]}'")
            table[int(codes @ weights)] = [float(row[c]) for c in cols[1:]]
    except (ValueError, IndexError) as exc:
        raise EdgecallError(f"{path}: not a k-mer model ({exc})") from None
    if np.isnan(table).any():
        raise EdgecallError(f"{path}: some k-mers are missing or repeated")
    level_mean, level_stdv, sd_mean = (np.ascontiguousarray(table[:, i]) for i in range(3))
    return KmerModel(k, level_mean, level_stdv, sd_mean, dominant_position(level_mean, k), str(path))


def _load_npz(path: Path) -> KmerModel:
    """An Uncalled4 table (columns current.mean, ...) or one packed by tools/pack_uncalled4_table.py, in pA."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if {f"{c}_q" for c in PACKED_COLUMNS} <= files:
                columns = []
                for c in PACKED_COLUMNS:
                    lo, hi = z[f"{c}_range"]
                    columns.append(lo + z[f"{c}_q"].astype(np.float64) * ((hi - lo) / 65535))
                k, shift, pa_mean, pa_stdv, order = int(z["k"]), int(z["shift"]), float(z["pa_mean"]), float(z["pa_stdv"]), None
            elif {"kmer", "current.mean", "current.stdv", "current_sd.mean", "_k", "_pa_mean", "_pa_stdv"} <= files:
                k, shift = int(z["_k"]), int(z["_shift"]) if "_shift" in files else -1
                pa_mean, pa_stdv = float(z["_pa_mean"]), float(z["_pa_stdv"])
                order = np.array([encode(str(s)) for s in z["kmer"]], dtype=np.int64) @ (4 ** np.arange(k - 1, -1, -1))
                columns = [z[c].astype(np.float64) for c in ("current.mean", "current.stdv", "current_sd.mean")]
            else:
                raise EdgecallError(f"{path}: not a k-mer table (neither Uncalled4's columns nor a packed edgecall table)")
    except FileNotFoundError:
        raise EdgecallError(f"{path}: no such k-mer model file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise EdgecallError(f"{path}: cannot read the k-mer table ({exc})") from None
    if not 1 <= k <= 12 or any(c.shape != (4**k,) for c in columns):
        raise EdgecallError(f"{path}: expected 4^k rows of {k}-mers")
    if order is not None:
        if np.unique(order).size != 4**k or order.min() < 0 or order.max() >= 4**k:
            raise EdgecallError(f"{path}: some k-mers are missing or repeated")
        ordered = [np.empty(4**k) for _ in columns]
        for dst, src in zip(ordered, columns):
            dst[order] = src
        columns = ordered
    level_mean = columns[0] * pa_stdv + pa_mean
    level_stdv, sd_mean = columns[1] * pa_stdv, columns[2] * pa_stdv
    centre = dominant_position(level_mean, k)
    if shift >= 0 and shift != centre:
        raise EdgecallError(f"{path}: the table says shift {shift}, but base {centre} sets its levels most")
    return KmerModel(k, level_mean, level_stdv, sd_mean, centre, str(path))
