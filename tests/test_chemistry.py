"""Chemistry detection from run info, model names, and the refusal of a wrong-chemistry model."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecall.catalog import choose, installed_models
from edgecall.chemistry import check_run, parse_model_name, pore, run_chemistry
from edgecall.errors import EdgecallError


def dorado_test_files(shared_data: Path) -> list[tuple[Path, str]]:
    """Dorado's chemistry-detection files: each folder is named after the chemistry of its file."""
    root = shared_data / "pod5" / "dorado"
    pores = {"dna_r9.4.1_e8": "r9.4.1", "dna_r10.4.1_e8.2_260bps": "r10.4.1", "dna_r10.4.1_e8.2_400bps_4khz": "r10.4.1",
             "dna_r10.4.1_e8.2_400bps_5khz": "r10.4.1", "rna002_70bps": "rna002", "rna004_130bps": "rna004"}
    return [(f, pores[d]) for d in pores for f in sorted((root / d).glob("*.pod5"))]


def test_every_dorado_chemistry_file_is_detected(shared_data: Path) -> None:
    import pod5

    cases = dorado_test_files(shared_data)
    assert len(cases) >= 12
    for path, expected in cases:
        with pod5.Reader(path) as reader:
            info = next(reader.reads()).run_info
        found = run_chemistry(info.flow_cell_product_code, info.sequencing_kit, info.sample_rate)
        assert found.pore == expected, path.name
        rate = int(path.stem.rsplit("-", 1)[1])
        assert found.sample_rate == rate
        assert found.speed == (260 if "260bps" in path.name else 400 if expected == "r10.4.1" else None), path.name


@pytest.mark.parametrize(("flow_cell", "kit", "expected"), [
    ("", "SQK-LSK114", "r10.4.1"),  # the kit alone tells: kit 14 runs on R10.4.1 only
    ("", "sqk-lsk109", "r9.4.1"),
    ("", "sqk-lsk108", "r9.4.1"),
    ("FLO-PRO112", "sqk-lsk112", "r10.4"),  # R10.4: another pore, never R10.4.1
    ("", "", None),
    ("FLO-XYZ999", "SQK-NEW999", None),
])
def test_run_chemistry_from_partial_run_info(flow_cell: str, kit: str, expected: str | None) -> None:
    assert run_chemistry(flow_cell, kit, 4000).pore == expected


def test_model_names_and_pores() -> None:
    parsed = parse_model_name("dna_r10.4.1_e8.2_400bps_hac@v4.2.0")
    assert (parsed.chemistry, parsed.tier, parsed.version, parsed.modified_bases) == (
        "dna_r10.4.1_e8.2_400bps", "hac", "4.2.0", False)
    assert parse_model_name("dna_r10.4.1_e8.2_400bps_hac@v5.0.0_5mCG_5hmCG@v3").modified_bases
    assert parse_model_name("edgecall-r941-v2") is None
    assert [pore(c) for c in ("dna_r9.4.1_e8", "dna_r10.4.1_e8.2_400bps", "rna004_130bps", "dna_r10.4_e8.1")] == [
        "r9.4.1", "r10.4.1", "rna004", "r10.4"]


def test_check_run_refuses_other_chemistry_and_rate_and_warns_on_unknown() -> None:
    r10 = run_chemistry("FLO-PRO114M", "SQK-LSK114", 4000)
    refused = check_run(r10, "edgecall-r941-v2", "dna_r9.4.1_e8", 4000)
    assert refused.refusal == ("are R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz; "
                               "model edgecall-r941-v2 is R9.4.1 at 4 kHz")
    rate = check_run(r10, "m", "dna_r10.4.1_e8.2_400bps", 5000)
    assert rate.refusal == "are sampled at 4 kHz; model m is R10.4.1 at 5 kHz"
    assert check_run(r10, "m", "dna_r10.4.1_e8.2_400bps", 5000, resample_from=(4000,)).resample
    unknown = check_run(run_chemistry("", "", 4000), "m", "dna_r9.4.1_e8", 4000)
    assert unknown.refusal is None and "no known chemistry" in unknown.warning
    slow = check_run(run_chemistry("FLO-PRO114M", "SQK-LSK114-260", 4000), "m", "dna_r10.4.1_e8.2_400bps", 4000)
    assert slow.refusal is None and "260 bases/s" in slow.warning


def test_choice_by_chemistry_and_tier() -> None:
    r9 = run_chemistry("FLO-MIN106", "SQK-LSK109", 4000)
    assert choose(None, r9, None).name == "edgecall-r941-v2"
    assert choose("fast", r9, None).name == "edgecall-r941-fast-v1"
    assert choose(None, None, None).name == "edgecall-r941-v2"  # no run info: the default, as before
    assert choose("deepnano-blitz-w96", r9, None).name == "deepnano-blitz-w96"
    with pytest.raises(EdgecallError, match=r"no installed model calls RNA004 .* reads .*dorado download"):
        choose(None, run_chemistry("FLO-MIN004RA", "SQK-RNA004", 4000), None)
    with pytest.raises(EdgecallError, match="no such package, model folder or installed model"):
        choose("no-such-model", r9, None)
    assert {m.name for m in installed_models()} >= {"edgecall-r941-v2", "deepnano-blitz-w64"}
