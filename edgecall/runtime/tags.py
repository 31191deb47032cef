"""The per-read SAM tags Dorado writes, computed once for every output format.

BAM records carry them as aux fields, FASTQ headers as ``key:type:value``
text (ONT's FASTQ output specification: the same tags, plus the run's ``DT``
and ``PU``, which BAM keeps in its ``@RG`` line). Names and meanings follow
Dorado's SAM specification page: ``qs:f`` mean Q, ``du:f`` seconds, ``ns:i``
samples (the call covers ``signal[ts:ns]``), ``ts:i`` trimmed samples, ``mx:i``
mux, ``ch:i`` channel, ``st:Z`` start (UTC), ``rn:i`` read number, ``fn:Z``
input file name, ``sm:f``/``sd:f``/``sv:Z`` the scaling, ``dx:i`` 0 (simplex),
``RG:Z`` ``{run_id}_{model}``, ``mv:B:c`` stride then moves (``--emit-moves``).
"""

from __future__ import annotations

from typing import Union

from edgecall.runtime.read import CalledRead

TagValue = Union[int, float, str, list[int]]
Tag = tuple[str, str, TagValue]  # (name, SAM type: i f Z or B:c, value)


def read_group_id(run_id: str, model_name: str) -> str:
    """Dorado's read-group id: ``{run_id}_{model}`` (no barcode part: edgecall does not demultiplex)."""
    return f"{run_id}_{model_name}"


def read_tags(called: CalledRead, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> list[Tag]:
    """The record's tags, in Dorado's order."""
    return _core_tags(called, model_name) + _moves(called, emit_moves, stride)


def fastq_tags(called: CalledRead, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> list[Tag]:
    """:func:`read_tags` plus the run's start (``DT``) and flow cell (``PU``) where known, as ONT's FASTQ lists them."""
    run = called.read.run
    extra: list[Tag] = [("DT", "Z", run.acquisition_start)] if run.acquisition_start else []
    if run.flow_cell_id:
        extra.append(("PU", "Z", run.flow_cell_id))
    return _core_tags(called, model_name) + extra + _moves(called, emit_moves, stride)


def _moves(called: CalledRead, emit_moves: bool, stride: int) -> list[Tag]:
    return [("mv", "B:c", [stride, *called.moves.tolist()])] if emit_moves else []


def _core_tags(called: CalledRead, model_name: str) -> list[Tag]:
    read = called.read
    return [
        ("qs", "f", round(called.mean_qscore, 2)),
        ("du", "f", read.num_samples / read.sample_rate),
        ("ns", "i", read.num_samples),
        ("ts", "i", called.trimmed_samples),
        ("mx", "i", read.mux),
        ("ch", "i", read.channel),
        ("st", "Z", read.start_time),
        ("rn", "i", read.read_number),
        ("fn", "Z", read.source.name),
        ("sm", "f", called.shift),
        ("sd", "f", called.scale),
        ("sv", "Z", called.scaling),
        ("dx", "i", 0),
        ("RG", "Z", read_group_id(read.run_id, model_name)),
    ]


def format_tag(tag: Tag) -> str:
    """``name:type:value`` as SAM text writes it (floats in at most 6 significant digits; qs keeps 2 decimals)."""
    name, kind, value = tag
    if kind == "B:c":
        assert isinstance(value, list)
        return f"{name}:B:c," + ",".join(map(str, value))
    if kind == "f":
        text = f"{value:.2f}" if name == "qs" else f"{value:.6g}"
        return f"{name}:f:{text}"
    return f"{name}:{kind}:{value}"
