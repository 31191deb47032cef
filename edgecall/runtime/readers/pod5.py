"""Reads from pod5 files through ONT's ``pod5`` library.

pA = calibration.scale * (raw + calibration.offset); the read's start time is
run_info.acquisition_start_time + start_sample / sample_rate; the run id is
run_info.acquisition_id (dorado's RG prefix).

The pod5 library hands Arrow tables to pyarrow without validating them, and
pyarrow trusts their offsets: a corrupt file can segfault or abort the process
(seen on ~3% of byte-mutated files). So every table is fully validated before
any read is touched; a file that fails becomes one :class:`ReadFailure`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pod5

from edgecall.runtime.read import Read, ReadFailure, RunInfo
from edgecall.runtime.readers import describe, is_read_id, start_time_iso


def iter_pod5(
    path: Path, read_ids: Collection[str] | None = None, skip_ids: Collection[str] | None = None
) -> Iterator[Read | ReadFailure]:
    """Yield each read of one pod5 file (only ``read_ids`` when given, none of ``skip_ids``)."""
    try:
        reader = pod5.Reader(path)
    except Exception as exc:
        yield ReadFailure(path, "cannot open as pod5: " + describe(exc))
        return
    with reader:
        try:
            _validate(reader)
            if read_ids is None:
                records = reader.reads()
            else:  # pod5 finds the selected rows through its index, skipping the rest
                selection = sorted(r for r in read_ids if is_read_id(r))
                if not selection:
                    return
                records = reader.reads(selection=selection, missing_ok=True)
            records = iter(records)
        except Exception as exc:
            yield ReadFailure(path, "not a readable pod5 file: " + describe(exc))
            return
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # the read table itself is broken: nothing after this is reachable
                yield ReadFailure(path, "unreadable read table: " + describe(exc))
                return
            if skip_ids and str(record.read_id) in skip_ids:
                continue  # the signal is decompressed only in _read, so skipping is cheap
            yield _read(record, path)


def pod5_read_count(path: Path) -> int | None:
    """The reads one pod5 file holds, from its read table (no signal touched); None if it cannot be read."""
    try:
        with pod5.Reader(path) as reader:
            _validate(reader)
            return int(reader.num_reads)
    except Exception:
        return None


def pod5_runs(path: Path) -> dict[str, RunInfo]:
    """run id -> header facts of the runs in one pod5 file; {} for a file that cannot be read (its reads fail later)."""
    runs: dict[str, RunInfo] = {}
    try:
        with pod5.Reader(path) as reader:
            _validate(reader)
            table = reader.run_info_table
            wanted = sum(table.get_batch(i).num_rows for i in range(table.num_record_batches))
            for record in reader.reads():  # run info rows are reached through reads; usually the first covers them
                runs.setdefault(str(record.run_info.acquisition_id), run_info_of(record.run_info))
                if len(runs) >= wanted:
                    break
    except Exception:
        return runs
    return runs


def _validate(reader: pod5.Reader) -> None:
    """Check every Arrow batch's offsets, lengths and dictionary indices (pyarrow's full validation).

    This touches offsets, not the compressed signal bytes, so it costs little
    beside decompressing the signal; it is what keeps a corrupt file from
    crashing the process inside pyarrow.
    """
    for table in (reader.read_table, reader.run_info_table, reader.signal_table):
        for index in range(table.num_record_batches):
            table.get_batch(index).validate(full=True)


def run_info_of(run_info: pod5.RunInfo) -> RunInfo:
    """The header facts of one pod5 run-info row."""
    return RunInfo(
        acquisition_start=start_time_iso(run_info.acquisition_start_time, 0, 1),
        flow_cell_id=str(run_info.flow_cell_id), device_id=str(run_info.sequencer_position),
        sample_id=str(run_info.sample_id), experiment_id=str(run_info.experiment_name),
        flow_cell_product_code=str(run_info.flow_cell_product_code), sequencing_kit=str(run_info.sequencing_kit),
    )


def _read(record: pod5.ReadRecord, path: Path) -> Read | ReadFailure:
    read_id: str | None = None
    try:
        read_id = str(record.read_id)
        signal = np.array(record.signal, dtype=np.int16)  # a copy: the file closes after the loop
        if signal.ndim != 1 or signal.size == 0:
            return ReadFailure(path, "empty signal (0 samples)", read_id)
        calibration = record.calibration
        run_info = record.run_info
        scale, offset = float(calibration.scale), float(calibration.offset)
        sample_rate = int(run_info.sample_rate)
        if not (math.isfinite(scale) and math.isfinite(offset)) or scale <= 0:
            return ReadFailure(path, f"bad calibration: scale {scale}, offset {offset}", read_id)
        if sample_rate <= 0:
            return ReadFailure(path, f"bad sample rate {sample_rate}", read_id)
        start_sample = int(record.start_sample)
        return Read(
            read_id=read_id,
            raw=signal,
            offset=offset,
            scale=scale,
            sample_rate=sample_rate,
            channel=int(record.pore.channel),
            start_time=start_time_iso(run_info.acquisition_start_time, start_sample, sample_rate),
            run_id=str(run_info.acquisition_id),
            source=path,
            mux=int(record.pore.well),
            read_number=int(record.read_number),
            start_sample=start_sample,
            end_reason=record.end_reason.name,
            run=run_info_of(run_info),
        )
    except Exception as exc:
        return ReadFailure(path, "unreadable read: " + describe(exc), read_id)
