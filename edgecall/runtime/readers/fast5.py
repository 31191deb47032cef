"""Reads from fast5 (HDF5) files: single-read and multi-read layouts.

Layouts (ONT's ont_fast5_api and what MinKNOW wrote over the years):

- single-read: ``Raw/Reads/Read_<n>/Signal`` with attrs ``read_id``,
  ``start_time`` (samples since the run started); ``UniqueGlobalKey/channel_id``
  and ``UniqueGlobalKey/tracking_id`` hold calibration and run metadata.
- multi-read: one group per read, ``read_<id>/Raw/Signal`` with the same
  attrs, plus ``read_<id>/channel_id`` and ``read_<id>/tracking_id``.

pA = range / digitisation * (raw + offset). Every attribute that goes into a
:class:`Read` is required; a read missing one becomes a :class:`ReadFailure`
that names it, rather than a read with a silently wrong calibration or header.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import vbz_h5py_plugin  # noqa: F401  (registers ONT's VBZ HDF5 filter on import)

from edgecall.runtime.read import Read, ReadFailure, RunInfo
from edgecall.runtime.readers import describe, is_read_id, start_time_iso

MULTI_READ_PREFIX = "read_"
_ISO = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?$", re.IGNORECASE
)


class _BadRead(Exception):
    """A read whose data or metadata is unusable; the message is the failure reason."""


def iter_fast5(
    path: Path, read_ids: Collection[str] | None = None, skip_ids: Collection[str] | None = None
) -> Iterator[Read | ReadFailure]:
    """Yield each read of one fast5 file (only ``read_ids`` when given, none of ``skip_ids``)."""
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:
        yield ReadFailure(path, "cannot open as fast5 (HDF5): " + describe(exc))
        return
    with handle:
        try:
            entries = _entries(handle)
            empty = len(handle) == 0
        except Exception as exc:
            yield ReadFailure(path, "cannot list reads: " + describe(exc))
            return
        if not entries:
            yield ReadFailure(path, "empty fast5 (an HDF5 file with no groups)" if empty else
                              "no raw reads (no Raw group and no read_* groups; an events- or basecall-only fast5?)")
            return
        for name, global_key in entries:
            record = _load(handle, path, name, global_key, read_ids, skip_ids)
            if record is not None:
                yield record


def _entries(handle: h5py.File) -> list[tuple[str, str]]:
    """(raw group path, group holding channel_id/tracking_id) for every read in the file."""
    if "Raw" in handle:  # single-read layout (there is normally exactly one Read_<n>)
        reads = handle["Raw"].get("Reads")
        if not isinstance(reads, h5py.Group):
            return []
        return [(f"Raw/Reads/{name}", "UniqueGlobalKey") for name in reads]
    return [(f"{name}/Raw", name) for name in handle if name.startswith(MULTI_READ_PREFIX)]


def _load(
    handle: h5py.File, path: Path, raw_path: str, global_key: str,
    read_ids: Collection[str] | None, skip_ids: Collection[str] | None,
) -> Read | ReadFailure | None:
    """One read, a failure naming what is wrong with it, or None when filtered out."""
    hint = global_key[len(MULTI_READ_PREFIX):] if global_key.startswith(MULTI_READ_PREFIX) else None
    if hint is not None and ((read_ids is not None and hint not in read_ids) or (skip_ids and hint in skip_ids)):
        return None  # multi-read: the group name gives the id without touching the read
    known_id = hint if hint is not None and is_read_id(hint) else None  # for the failure record
    try:
        raw = handle.get(raw_path)
        if not isinstance(raw, h5py.Group):
            raise _BadRead(f"no raw signal ({raw_path} missing)")
        read_id = _text(raw.attrs, "read_id", raw_path) if "read_id" in raw.attrs or hint is None else hint
        if not is_read_id(read_id):
            raise _BadRead(f"malformed read id {read_id!r} (expected a UUID)")
        known_id = read_id
        if (read_ids is not None and read_id not in read_ids) or (skip_ids and read_id in skip_ids):
            return None
        return _read(handle, path, raw, raw_path, global_key, read_id)
    except _BadRead as exc:
        return ReadFailure(path, str(exc), known_id)
    except Exception as exc:
        return ReadFailure(path, f"unreadable read {raw_path}: " + describe(exc), known_id)


def _read(handle: h5py.File, path: Path, raw: h5py.Group, raw_path: str, global_key: str, read_id: str) -> Read:
    channel_id = _group(handle, f"{global_key}/channel_id").attrs
    tracking_id = _group(handle, f"{global_key}/tracking_id").attrs
    where = f"{global_key}/channel_id"
    digitisation = _number(channel_id, "digitisation", where)
    value_range = _number(channel_id, "range", where)
    offset = _number(channel_id, "offset", where)
    sample_rate = _number(channel_id, "sampling_rate", where)
    if digitisation <= 0 or value_range <= 0 or sample_rate <= 0 or round(sample_rate) <= 0:
        raise _BadRead(f"bad calibration: digitisation {digitisation}, range {value_range}, sampling_rate {sample_rate}")
    channel = _integer(_text(channel_id, "channel_number", where), "channel_number")
    start_sample = _integer(_value(raw.attrs, "start_time", raw_path), "start_time")
    if start_sample < 0:
        raise _BadRead(f"negative start_time {start_sample}")
    exp_start = _exp_start_time(_text(tracking_id, "exp_start_time", f"{global_key}/tracking_id"))
    run_id = _text(tracking_id, "run_id", f"{global_key}/tracking_id")

    dataset = raw.get("Signal")
    if not isinstance(dataset, h5py.Dataset):
        raise _BadRead(f"no raw signal ({raw_path}/Signal missing)")
    signal = _signal(dataset)
    rate = int(round(sample_rate))
    return Read(
        read_id=read_id,
        raw=signal,
        offset=offset,
        scale=value_range / digitisation,
        sample_rate=rate,
        channel=channel,
        start_time=start_time_iso(exp_start, start_sample, rate),
        run_id=run_id,
        source=path,
        mux=_optional_int(raw.attrs, "start_mux"),
        read_number=_optional_int(raw.attrs, "read_number"),
        start_sample=start_sample,
        end_reason=_end_reason(raw.attrs),
        run=_run_info(handle, global_key, tracking_id, exp_start),
    )


def _run_info(handle: h5py.File, global_key: str, tracking_id: Mapping[str, Any], exp_start: datetime) -> RunInfo:
    """Header facts from tracking_id (and context_tags for the kit); absent ones stay ''."""
    context = handle.get(f"{global_key}/context_tags")
    kit = _optional_text(context.attrs, "sequencing_kit") if isinstance(context, h5py.Group) else ""
    return RunInfo(
        acquisition_start=start_time_iso(exp_start, 0, 1),
        flow_cell_id=_optional_text(tracking_id, "flow_cell_id"), device_id=_optional_text(tracking_id, "device_id"),
        sample_id=_optional_text(tracking_id, "sample_id"), experiment_id=_optional_text(tracking_id, "experiment_name"),
        flow_cell_product_code=_optional_text(tracking_id, "flow_cell_product_code"), sequencing_kit=kit,
    )


# MinKNOW's end_reason enumeration in fast5 (ont_fast5_api), named as pod5 names them
_END_REASONS = {0: "unknown", 1: "partial", 2: "mux_change", 3: "unblock_mux_change", 4: "data_service_unblock_mux_change",
                5: "signal_positive", 6: "signal_negative"}


def _end_reason(attrs: Mapping[str, Any]) -> str:
    try:
        value = _value(attrs, "end_reason", "")
    except _BadRead:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    if isinstance(value, (int, np.integer)):
        return _END_REASONS.get(int(value), "")
    return str(value).strip()


def _optional_text(attrs: Mapping[str, Any], name: str) -> str:
    """An attribute that output headers like to have but a read does not need; '' when absent or odd."""
    try:
        return _text(attrs, name, "") if name in attrs else ""
    except _BadRead:
        return ""


def _optional_int(attrs: Mapping[str, Any], name: str) -> int:
    try:
        return _integer(_value(attrs, name, ""), name) if name in attrs else 0
    except _BadRead:
        return 0


def _signal(dataset: h5py.Dataset) -> np.ndarray:
    """The whole signal as int16; other integer types are accepted when their values fit."""
    if dataset.ndim != 1:
        raise _BadRead(f"signal has shape {dataset.shape}, expected one dimension")
    if dataset.shape[0] == 0:
        raise _BadRead("empty signal (0 samples)")
    if dataset.dtype.kind not in "iu":
        raise _BadRead(f"signal has dtype {dataset.dtype}, expected integers")
    try:
        values = dataset[()]
    except OSError as exc:
        filters = _filter_names(dataset)  # names the filter when the VBZ plugin is missing
        raise _BadRead(f"cannot decode signal (filters: {filters}): {describe(exc)}") from None
    if values.dtype != np.int16:
        info = np.iinfo(np.int16)
        if values.min() < info.min or values.max() > info.max:
            raise _BadRead(f"signal values outside int16 ({values.min()}..{values.max()})")
    return np.ascontiguousarray(values, dtype=np.int16)


def _filter_names(dataset: h5py.Dataset) -> str:
    try:
        plist = dataset.id.get_create_plist()
        names = [plist.get_filter(i)[3].decode(errors="replace") for i in range(plist.get_nfilters())]
    except Exception:
        return "unknown"
    return ", ".join(names) or "none"


def _exp_start_time(text: str) -> datetime:
    """Run start as a UTC datetime from the formats seen in real files.

    '2018-10-24T16:55:04Z', '2021-08-26T15:38:50.348565+10:00', a bare
    ISO string (taken as UTC), or integer epoch seconds ('1481657610', old files).
    """
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=float(text))
    match = _ISO.match(text)
    if match is None:
        raise _BadRead(f"unrecognised exp_start_time {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = timezone.utc
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError as exc:
        raise _BadRead(f"bad exp_start_time {text!r}: {exc}") from None
    return moment.astimezone(timezone.utc)


def _group(handle: h5py.File, name: str) -> h5py.Group:
    group = handle.get(name)
    if not isinstance(group, h5py.Group):
        raise _BadRead(f"missing group {name}")
    return group


def _value(attrs: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in attrs:
        raise _BadRead(f"missing attribute {where}/{name}")
    value = attrs[name]
    if isinstance(value, np.ndarray):  # some writers store scalars as 1-element arrays
        if value.size != 1:
            raise _BadRead(f"attribute {where}/{name} has {value.size} values, expected one")
        value = value.reshape(()).item()
    return value.item() if isinstance(value, np.generic) else value


def _text(attrs: Mapping[str, Any], name: str, where: str) -> str:
    value = _value(attrs, name, where)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def _number(attrs: Mapping[str, Any], name: str, where: str) -> float:
    value = _value(attrs, name, where)
    try:
        number = float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise _BadRead(f"attribute {where}/{name} is not a number: {value!r}") from None
    if not np.isfinite(number):
        raise _BadRead(f"attribute {where}/{name} is not finite: {number}")
    return number


def _integer(value: Any, what: str) -> int:
    try:
        number = float(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise _BadRead(f"{what} is not a number: {value!r}") from None
    if not np.isfinite(number) or number != int(number):
        raise _BadRead(f"{what} is not an integer: {value!r}")
    return int(number)
