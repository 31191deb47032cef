"""Which chemistry a read is, which a model is, and whether one may call the other.

A read called with the wrong chemistry's model is worse than a refusal: the
calls look like DNA and map nowhere. Dorado picks its model from the run info
MinKNOW writes (flow cell product code, sequencing kit, sample rate); this
module does the same from the same facts, and names model chemistries the way
ONT's model names do (``dna_r10.4.1_e8.2_400bps_hac@v4.2.0``). No torch here:
the runtime uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Flow cell product codes by pore (Dorado's kit tables and ONT's product pages).
FLOW_CELLS = {
    "r9.4.1": ("FLO-MIN106", "FLO-MIN107", "FLO-FLG001", "FLO-PRO001", "FLO-PRO002", "FLO-PRO002M",
               "FLO-PRO002-ECO", "FLO-MINSP6"),
    "r10.4.1": ("FLO-MIN114", "FLO-MIN114HD", "FLO-FLG114", "FLO-FLG114HD", "FLO-PRO114", "FLO-PRO114M",
                "FLO-PRO114HD"),
    "rna004": ("FLO-MIN004RA", "FLO-FLG004RA", "FLO-PRO004RA"),
    "r10.4": ("FLO-MIN112", "FLO-FLG112", "FLO-PRO112"),
    "r10.3": ("FLO-MIN111", "FLO-PRO011"),
}
LABELS = {"r9.4.1": "R9.4.1", "r10.4.1": "R10.4.1", "rna002": "RNA002", "rna004": "RNA004", "r10.4": "R10.4",
          "r10.3": "R10.3"}
MODEL_NAME = re.compile(r"^(?P<chemistry>.+?)_(?P<tier>fast|hac|sup)@v(?P<version>[0-9][0-9.]*)(?P<rest>_.+)?$")


@dataclass(frozen=True)
class ModelName:
    chemistry: str  # e.g. dna_r10.4.1_e8.2_400bps
    tier: str  # fast | hac | sup
    version: str  # e.g. 4.2.0
    modified_bases: bool  # a modbase model's name (…@v4.2.0_5mCG_5hmCG@v2)


def parse_model_name(name: str) -> ModelName | None:
    """ONT's model naming, or None for any other name."""
    found = MODEL_NAME.match(name)
    if not found:
        return None
    return ModelName(found["chemistry"], found["tier"], found["version"], found["rest"] is not None)


def pore(chemistry: str) -> str | None:
    """The pore family of a model chemistry string (``dna_r9.4.1_e8`` -> ``r9.4.1``), None if unknown."""
    text = chemistry.lower()
    for name in ("rna002", "rna004"):
        if name in text:
            return name
    found = re.search(r"r(9\.4\.1|10\.4\.1|10\.4|10\.3)(?![.\d])", text)
    return f"r{found.group(1)}" if found else None


def speed(chemistry: str) -> int | None:
    """Bases per second a chemistry string names (``..._400bps``), None if it names none."""
    found = re.search(r"_(\d+)bps", chemistry)
    return int(found.group(1)) if found else None


def format_rate(sample_rate: int) -> str:
    return f"{sample_rate / 1000:g} kHz"


@dataclass(frozen=True)
class RunChemistry:
    """What a run's info says about its reads; ``pore`` None when the info is silent or unknown."""

    pore: str | None
    sample_rate: int
    flow_cell: str = ""
    kit: str = ""
    speed: int | None = None  # bases/s when the kit tells (260 for the -260 kits)

    def describe(self) -> str:
        """e.g. 'R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz'."""
        what = ", ".join(x for x in (self.flow_cell, self.kit.upper()) if x)
        label = LABELS.get(self.pore or "", "of unknown chemistry")
        return f"{label}{f' ({what})' if what else ''} at {format_rate(self.sample_rate)}"


def run_chemistry(flow_cell: str, kit: str, sample_rate: int) -> RunChemistry:
    """Dorado-style detection from the run info MinKNOW writes (pod5 run info, fast5 context tags)."""
    code = flow_cell.strip().upper()
    kit_code = kit.strip().upper()
    found = next((p for p, codes in FLOW_CELLS.items() if code in codes), None)
    if "RNA002" in kit_code:
        found = "rna002"
    elif "RNA004" in kit_code:
        found = "rna004"
    elif found is None and re.search(r"SQK-[A-Z]+114", kit_code):
        found = "r10.4.1"  # kit 14 runs only on R10.4.1 flow cells
    elif found is None and re.search(r"SQK-[A-Z]+1(0[4-9]|10|11)\b|SQK-(RAD|RBK|PBK|RPB|NBD|PCB|PCS|DCS)00\d|SQK-RAB20\d", kit_code):
        found = "r9.4.1"  # kit 9/10/11 and the 00x kits ran on R9.4.1
    rate = None
    if found == "r10.4.1":
        rate = 260 if kit_code.endswith("-260") else 400
    return RunChemistry(found, int(sample_rate), code, kit.strip(), rate)


@dataclass(frozen=True)
class RunCheck:
    """Whether a model may call a run's reads: refused (with why), or allowed with an optional warning."""

    refusal: str | None = None
    warning: str | None = None
    resample: bool = False  # the model calls these reads after resampling them to its rate


def model_label(name: str, chemistry: str, sample_rate: int) -> str:
    return f"model {name} is {LABELS.get(pore(chemistry) or '', chemistry)} at {format_rate(sample_rate)}"


def check_run(run: RunChemistry, model_name: str, model_chemistry: str, model_rate: int,
              resample_from: tuple[int, ...] = ()) -> RunCheck:
    """Refuse a known other chemistry or an unusable rate; warn on unknown chemistry or speed."""
    model_pore = pore(model_chemistry)
    label = model_label(model_name, model_chemistry, model_rate)
    if run.pore is not None and model_pore is not None and run.pore != model_pore:
        return RunCheck(refusal=f"are {run.describe()}; {label}")
    rate_ok = run.sample_rate == model_rate
    resample = not rate_ok and run.sample_rate in resample_from
    if not rate_ok and not resample:
        return RunCheck(refusal=f"are sampled at {format_rate(run.sample_rate)}; {label}")
    if run.pore is None:
        return RunCheck(warning=f"have no known chemistry in their run info ({run.describe()}); "
                                f"called with {label.removeprefix('model ')}, check the calls", resample=resample)
    model_speed = speed(model_chemistry)
    if run.speed is not None and model_speed is not None and run.speed != model_speed:
        return RunCheck(warning=f"are {run.speed} bases/s chemistry; {label} for {model_speed} bases/s",
                        resample=resample)
    return RunCheck(resample=resample)
