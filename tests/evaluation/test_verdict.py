"""The verdict: picks per reference set and sampler family, spreads, and the terminal's
short summary (its length, and that it names both references)."""

import json
import math

import pytest

from spherevae.distributions.samplers import SAMPLERS
from spherevae.evaluation.verdict import Pick, compare_runs, pick, separation, spread, summary_lines


def _metrics(main="vmf", **fids):
    """A metrics.json with a FID against both references for every registered sampler
    (the test FID is the recon FID + 1), overridden by ``fids`` (key -> value)."""
    m = {"main_sampler": main, "fid_backbone": "domain", "rmse_percent": 7.5,
         "fid_domain_reconstruction_vs_test": 4.0, "num_test": 100}
    for i, s in enumerate(SAMPLERS):
        m[f"fid_domain_{s}_recon"] = 10.0 + i
        m[f"fid_domain_{s}_test"] = 11.0 + i
        m[f"precision_domain_{s}"] = 0.5
    return {**m, **fids}


def test_the_best_fitted_sampler_is_the_lowest_fitted_fid_and_never_a_prior():
    m = _metrics(fid_domain_prior_recon=0.1, fid_domain_prior_sphere_recon=0.2,
                 fid_domain_gmm_recon=3.0, fid_domain_esag_recon=math.nan)
    got = pick(m, "recon", "best fitted sampler")
    fitted = {s: m[f"fid_domain_{s}_recon"] for s, spec in SAMPLERS.items() if spec.fitted}
    expected = min((v, s) for s, v in fitted.items() if v == v)  # independent: a plain min over non-NaN
    assert (got.value, got.sampler) == expected == (3.0, "gmm")
    assert pick(m, "recon", "paper's sampler") == Pick("vmf", m["fid_domain_vmf_recon"], None)
    assert pick({**m, "fid_domain_vmf_recon": math.nan}, "recon", "paper's sampler") is None


@pytest.mark.parametrize(("a", "sa", "b", "sb", "expected"), [
    (10.0, 1.0, 15.0, 1.0, True),     # 12 < 13
    (10.0, 1.5, 15.0, 1.5, False),    # 13 > 12
    (10.0, None, 15.0, 1.0, None),    # unmeasured
])
def test_separation_is_two_spreads_apart(a, sa, b, sb, expected):
    assert separation(Pick("x", a, sa), Pick("y", b, sb)) is expected


def test_spread_prefers_a_std_and_falls_back_to_a_standard_error():
    m = {"kid_domain_vmf_recon": 1e-3, "kid_domain_vmf_recon_se": 2e-4, "fid_domain_vmf_recon": 5.0,
         "fid_domain_vmf_recon_std": 0.5, "fid_domain_vmf_recon_se": 0.1}
    assert spread(m, "kid_domain_vmf_recon") == 2e-4 and spread(m, "fid_domain_vmf_recon") == 0.5
    assert spread(m, "fid_domain_gmm_recon") is None


def test_compare_runs_names_the_winner_runner_up_and_their_separation():
    a = _metrics(fid_domain_vmf_recon=20.0, fid_domain_vmf_recon_std=1.0)
    b = _metrics(main="prior", fid_domain_prior_recon=30.0, fid_domain_prior_recon_std=1.0)
    v = compare_runs([b, a], "recon", "paper's sampler")
    assert (v.winner, v.runner_up, v.separated) == (1, 0, True)
    assert v.picks[0].sampler == "prior" and v.spread_note == "beyond ±2σ"
    close = compare_runs([{**b, "fid_domain_prior_recon_std": 4.0}, a], "recon", "paper's sampler")
    assert close.separated is False and "not separated" in close.spread_note


def test_the_terminal_summary_is_short_and_names_both_references():
    m = _metrics(fid_domain_gmm_recon=1.0, fid_domain_gmm_test=2.0)
    full = sum(1 for k in m if k.startswith(("fid_", "precision_")))  # what --all would list
    lines = summary_lines(m)
    assert len(lines) == 4 < full  # reconstruction, paper's, best fitted, verdict
    assert all(len(line) <= 160 for line in lines)
    assert lines[0] == "reconstruction: RMSE 7.5% of the pixel range, FID domain reconstructions vs real test set 4"
    assert lines[1] == "paper's sampler (vmf): FID domain vs reconstructions 12, vs real test set 13"
    assert lines[2].startswith("best fitted sampler (gmm, by FID vs reconstructions): FID domain vs "
                               "reconstructions 1, vs real test set 2")
    assert lines[3] == ("verdict: gmm beats the paper's vmf vs reconstructions (1 vs 12); gmm beats "
                        "the paper's vmf vs real test set (2 vs 13) [no spread measured]")
    json.dumps(lines)  # plain strings


def test_the_summary_of_a_run_whose_paper_sampler_wins_says_so():
    m = _metrics(fid_domain_vmf_recon=0.5, fid_domain_vmf_test=0.6)
    assert summary_lines(m)[-1] == ("verdict: the paper's vmf is best vs reconstructions; the paper's "
                                    "vmf is best vs real test set")
