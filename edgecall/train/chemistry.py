"""What differs between the chemistries edgecall simulates and trains for: R9.4.1 and R10.4.1.

One frozen record per chemistry: its pore model, translocation speed, the
signal statistics fitted to real reads, the digitiser calibration and the run
info MinKNOW writes, and the model-config defaults a new model of that
chemistry gets. Everything else in the simulator and trainer is shared.

R10.4.1 figures (measured here on the real remora reads, ``r10/remora``
mod_reads and the simplex reads of duplex_reads, 4 kHz, move tables of their
BAMs; never on the dev set ``pod5/remora/can_reads.pod5``):
- speed: 400 bases/s (ONT's e8.2 400 bps chemistry); the reads' move tables
  give 10.06 samples/base at 4 kHz (per read 8.6-13.0: speed sigma ~0.13);
  the move durations' p95/p99 of 2.5x/4.5x the mean fit a lognormal dwell of
  sigma 0.7 (1.645 sigma - sigma^2/2 = ln 2.5);
- per-sample noise: 2.15 pA (robust first-difference estimate; 2.16-2.35 pA on
  the 5 kHz reads in ``pod5/slow5-converted`` and ``pod5/dorado-extra``), which is
  0.74 x the table's median ``current_sd`` of 2.9 pA;
- level jitter: re-aligned reads correlate r ~ 0.98 with the table (issue 17),
  a residual of ~0.2 normalised units, 0.9 x the table's median ``current.stdv``;
- per read: median 86-110 pA (mean 97), quantile scale 0.53 (q90 - q20)
  26-29.5 pA (mean 27.5); open pore (pod5 median_before) 173-212 pA. A per-read
  scale of 0.91 +- 0.04 and shift of 5.5 +- 6 pA on the table's pA levels give
  simulated reads those figures (tests/test_simulate.py compares them).
Digitiser: a MinION flow cell (FLO-MIN114) sits on the same ASIC as the R9.4.1
GridION run the R9.4.1 figures come from (FLO-MIN106: adc -4096..4095, 0.18283
pA per unit), so R10.4.1 reads share that calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecall.errors import EdgecallError


@dataclass(frozen=True)
class Chemistry:
    """One chemistry's constants; see the module doc for where each comes from."""

    name: str  # "r9.4.1" or "r10.4.1", as --chemistry spells it
    config_chemistry: str  # ModelConfig.chemistry of a model trained for it
    sample_rates: tuple[int, ...]  # Hz MinKNOW records it at; the first is the default
    bases_per_second: float  # translocation speed
    kmer_model: str  # "r9" or "r10": which packaged pore model (kmer_model.default_kmer_model_path)
    dwell_sigma: float  # lognormal sigma of a base's dwell beyond 1 sample
    speed_sigma: float  # lognormal sigma of a read's speed
    noise: float  # per-sample noise in units of the pore model's sd_mean
    level_noise: float  # per-event level jitter in units of the pore model's level_stdv
    read_scale: tuple[float, float]  # mean, sd of the per-read scale on model levels
    read_shift: tuple[float, float]  # pA mean, sd of the per-read shift
    open_pore_pa: tuple[float, float]  # pA mean, sd of the open-pore level before a read
    calibration_scale: float  # pA per DAC unit
    calibration_offsets: tuple[int, int]  # DAC units, inclusive range drawn per read
    adc_range: tuple[int, int]  # run_info adc_min, adc_max; raw is clipped here
    flow_cell: str  # flow_cell_product_code
    kit: str  # sequencing_kit, upper case as in the protocol name
    device_type: str  # tracking_id device_type
    asic_version: str
    protocol: str  # protocol name with {rate} for the rate letter MinKNOW uses (T: 4 kHz, K: 5 kHz)
    basecall_config: dict[int, str]  # sample rate -> basecall_config_filename MinKNOW records
    started: datetime  # acquisition start time written to the run info
    stride: int  # a new model's stride (samples per output frame)
    conv_channels: tuple[int, int]  # a new model's first two convolutions (the third is --features)
    normalisation: str  # a new model's normalisation strategy
    chunk: tuple[int, int]  # a new model's default runtime chunksize, overlap (samples; multiples of the stride)

    def check_rate(self, sample_rate: int) -> int:
        if sample_rate not in self.sample_rates:
            raise EdgecallError(f"{self.name} reads are recorded at {' or '.join(map(str, self.sample_rates))} Hz, "
                                f"not {sample_rate}")
        return sample_rate

    def dwell_mean(self, sample_rate: int) -> float:
        """Samples per base on average at ``sample_rate``."""
        return sample_rate / self.bases_per_second

    def run_info_fields(self, run_id: str, sample_rate: int) -> dict[str, Any]:
        """pod5.RunInfo keyword arguments; identity fields say 'simulated'."""
        rate_letter = {4000: "T", 5000: "K"}.get(sample_rate, "")
        protocol = self.protocol.format(rate=rate_letter)
        context = {
            "basecall_config_filename": self.basecall_config.get(sample_rate, ""), "experiment_type": "genomic_dna",
            "sample_frequency": str(sample_rate), "sequencing_kit": self.kit.lower(), "package": "bream4",
        }
        tracking = {
            "device_type": self.device_type, "exp_script_purpose": "sequencing_run",
            "flow_cell_product_code": self.flow_cell, "run_id": run_id, "sample_id": "simulated",
            "asic_version": self.asic_version, "exp_script_name": protocol, "version": "4.2.5" if self.name == "r9.4.1" else "5.7.5",
        }
        return dict(
            acquisition_id=run_id, acquisition_start_time=self.started, adc_max=self.adc_range[1],
            adc_min=self.adc_range[0], context_tags=context, experiment_name="edgecall simulate",
            flow_cell_id="SIMULATED", flow_cell_product_code=self.flow_cell, protocol_name=protocol,
            protocol_run_id=run_id, protocol_start_time=self.started, sample_id="simulated", sample_rate=sample_rate,
            sequencing_kit=self.kit.lower(), sequencer_position="X4" if self.device_type == "gridion" else "MN00000",
            sequencer_position_type=self.device_type, software="edgecall simulate", system_name="", system_type="",
            tracking_id=tracking,
        )


R941 = Chemistry(
    name="r9.4.1", config_chemistry="dna_r9.4.1_e8", sample_rates=(4000,), bases_per_second=450.0, kmer_model="r9",
    dwell_sigma=0.75, speed_sigma=0.1, noise=1.0, level_noise=0.4, read_scale=(0.98, 0.04), read_shift=(-7.2, 3.0),
    open_pore_pa=(236.0, 1.5), calibration_scale=0.1828334778547287, calibration_offsets=(-4, 18),
    adc_range=(-4096, 4095), flow_cell="FLO-FLG001", kit="SQK-LSK109", device_type="gridion", asic_version="IA02D",
    protocol="sequencing/sequencing_MIN106_DNA:FLO-FLG001:SQK-LSK109",
    basecall_config={4000: "dna_r9.4.1_450bps_hac.cfg"},
    started=datetime(2021, 3, 15, 15, 36, 48, tzinfo=timezone.utc),
    stride=5, conv_channels=(4, 16), normalisation="medmad", chunk=(4000, 500),
)

R1041 = Chemistry(
    name="r10.4.1", config_chemistry="dna_r10.4.1_e8.2_400bps", sample_rates=(5000, 4000), bases_per_second=400.0,
    kmer_model="r10", dwell_sigma=0.7, speed_sigma=0.13, noise=0.74, level_noise=0.9, read_scale=(0.91, 0.04),
    read_shift=(5.5, 6.0), open_pore_pa=(193.0, 10.0), calibration_scale=0.1828334778547287,
    calibration_offsets=(-4, 18), adc_range=(-4096, 4095), flow_cell="FLO-MIN114", kit="SQK-LSK114",
    device_type="minion", asic_version="IA02D",
    protocol="sequencing/sequencing_MIN114_DNA_e8_2_400{rate}:FLO-MIN114:SQK-LSK114:400",
    basecall_config={4000: "dna_r10.4.1_e8.2_400bps_4khz_hac.cfg", 5000: "dna_r10.4.1_e8.2_400bps_5khz_hac.cfg"},
    started=datetime(2024, 5, 14, 10, 12, 30, tzinfo=timezone.utc),
    stride=6, conv_channels=(16, 16), normalisation="quantile", chunk=(6000, 600),
)

CHEMISTRIES = {c.name: c for c in (R941, R1041)}


def chemistry(name: str) -> Chemistry:
    """The chemistry called ``name`` (r9.4.1, r10.4.1)."""
    try:
        return CHEMISTRIES[name.lower()]
    except KeyError:
        raise EdgecallError(f"unknown chemistry '{name}' (known: {', '.join(CHEMISTRIES)})") from None


def default_kmer_model_path(chem: Chemistry) -> Path:
    from edgecall.train import kmer_model

    return kmer_model.default_kmer_model_path() if chem.kmer_model == "r9" else kmer_model.R10_PACKAGED_MODEL
