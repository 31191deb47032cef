"""The records that flow between runtime stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RunInfo:
    """The run's facts that output headers carry (BAM @RG, FASTQ DT/PU, the summary); '' where the file is silent."""

    acquisition_start: str = ""  # ISO-8601 UTC start of the acquisition (@RG DT, FASTQ DT:Z)
    flow_cell_id: str = ""  # @RG PU, FASTQ PU:Z
    device_id: str = ""  # sequencer position, e.g. X4 or MN12345 (@RG PM)
    sample_id: str = ""  # @RG LB and SM
    experiment_id: str = ""  # MinKNOW's experiment name
    flow_cell_product_code: str = ""  # e.g. FLO-MIN114
    sequencing_kit: str = ""  # e.g. sqk-lsk114


NO_RUN_INFO = RunInfo()


@dataclass(frozen=True, eq=False)
class Read:
    """One raw read as the sequencer wrote it."""

    read_id: str  # UUID string
    raw: np.ndarray  # (samples,) int16 DAC values
    offset: float  # pA = scale * (raw + offset)
    scale: float  # pA per DAC unit
    sample_rate: int  # Hz
    channel: int  # pore channel number
    start_time: str  # ISO-8601 UTC time of the read's first sample, e.g. 2021-01-01T00:00:00.000+00:00
    run_id: str  # acquisition/run id (RG tag prefix)
    source: Path  # file the read came from
    mux: int = 0  # well of the channel the read came through (mx:i); 0: unknown
    read_number: int = 0  # the channel's read counter (rn:i)
    start_sample: int = 0  # samples since the acquisition started (summary start_time = start_sample / sample_rate)
    end_reason: str = ""  # why the read ended, e.g. signal_positive; '': unknown
    run: RunInfo = NO_RUN_INFO  # the run's header facts

    @property
    def num_samples(self) -> int:
        return int(self.raw.shape[0])

    def pa(self) -> np.ndarray:
        """(samples,) float32 current in pA."""
        return (self.scale * (self.raw.astype(np.float32) + np.float32(self.offset))).astype(np.float32)


@dataclass(frozen=True)
class ReadFailure:
    """A read or a whole file that could not be read; counted, reported, skipped."""

    source: Path  # file that failed
    reason: str  # one line, says what is wrong
    read_id: str | None = None  # None when the whole file (or a whole run in it) failed
    reads: int = 1  # reads this failure stands for (a file's reads refused together)


@dataclass(frozen=True, eq=False)
class DecodedChunk:
    """Decoder output for one chunk of one read."""

    moves: np.ndarray  # (frames,) uint8, 1 where a base was emitted
    sequence: str  # bases, len == moves.sum()
    qstring: str  # phred+33 per base, same length as sequence


@dataclass(frozen=True, eq=False)
class CalledRead:
    """A basecalled read ready for FASTQ."""

    read: Read  # the raw read (metadata; its signal may be released)
    sequence: str  # called bases
    qstring: str  # phred+33 per base
    mean_qscore: float  # mean Q from base 60 on (the qs:f tag)
    moves: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # (frames,) uint8
    trimmed_samples: int = 0  # samples dropped at the start before chunking
    shift: float = 0.0  # pA the normalisation subtracted (sm:f)
    scale: float = 1.0  # pA per normalised unit (sd:f)
    scaling: str = "none"  # the normalisation's name as Dorado's sv:Z writes it (med_mad, quantile, pa, none)


class Idle:
    """The input has nothing more for now (a watched folder waits for files).

    It travels through the stages behind the reads before it; each stage passes
    on what it holds (a part-filled batch, requests in flight, the output's
    buffer), so reads reach the output without waiting for more input.
    """

    def __repr__(self) -> str:
        return "IDLE"


IDLE = Idle()
