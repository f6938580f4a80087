"""Latent-pressure multipliers: the paper's quench-anneal and the others."""

import itertools
import math

import pytest

from spherevae.training.schedules import SCHEDULES, Clock, make_schedule, register_schedule


def at(epoch, step=0, steps=10, total=300):
    return Clock(epoch, step, steps, total)


def test_quench_anneal_is_the_paper_schedule_on_300_epochs():
    m = make_schedule("quench_anneal", {"quench_epochs": 100})
    # Facts file: m = sqrt(epoch) + 1 for epochs 0..100 (inclusive), 1 afterwards.
    for e in (0, 1, 4, 25, 99, 100):
        assert m(at(e)) == pytest.approx(math.sqrt(e) + 1)
    assert m(at(101)) == 1.0 and m(at(299)) == 1.0
    # The default fraction (1/3) gives the same 100 of 300.
    assert make_schedule("quench_anneal")(at(100)) == pytest.approx(11.0)
    assert make_schedule("quench_anneal")(at(101)) == 1.0


def test_quench_anneal_scaled_to_a_short_run_keeps_the_peak_pressure():
    m = make_schedule("quench_anneal")  # 30 epochs -> quench for the first 10
    values = [m(at(e, total=30)) for e in range(30)]
    assert values[10] == pytest.approx(11.0)  # same peak as the paper's epoch 100
    assert values[5] == pytest.approx(math.sqrt(50) + 1)
    assert all(a < b for a, b in itertools.pairwise(values[:11]))  # rising
    assert values[11:] == [1.0] * 19
    unscaled = make_schedule("quench_anneal", {"reference_epochs": 10})
    assert unscaled(at(9, total=30)) == pytest.approx(4.0)


def test_quench_without_anneal_keeps_rising_as_the_authors_half_compression():
    """Authors' code, "half" compression: m = sqrt(epoch) + 1 for the whole run."""
    m = make_schedule("quench_anneal", {"quench_epochs": 100, "anneal": False})
    for e in (0, 50, 100, 101, 299):
        assert m(at(e)) == pytest.approx(math.sqrt(e) + 1)
    annealed = make_schedule("quench_anneal", {"quench_epochs": 100})
    assert [m(at(e)) for e in range(101)] == [annealed(at(e)) for e in range(101)]


def test_linear_warmup_rises_per_step_then_stays():
    m = make_schedule("linear_warmup", {"warmup_epochs": 2})
    assert m(at(0, 0)) == 0.0
    assert m(at(0, 5)) == pytest.approx(0.25)
    assert m(at(1, 0)) == pytest.approx(0.5)
    assert m(at(2, 0)) == 1.0 and m(at(50)) == 1.0


def test_cyclical_repeats_ramps():
    m = make_schedule("cyclical", {"cycles": 4, "ratio": 0.5})
    total = 8  # 2 epochs per cycle, ramp over the first epoch of each
    vals = [m(at(e, s, steps=4, total=total)) for e in range(total) for s in range(4)]
    assert vals[0] == 0.0 and vals[2] == pytest.approx(0.5) and vals[4] == 1.0
    assert vals[8] == 0.0  # the second cycle restarts
    assert vals[:8] == vals[8:16] == vals[24:32]
    assert max(vals) == 1.0 and min(vals) == 0.0


def test_constant_and_registry_extension():
    assert make_schedule("constant")(at(7)) == 1.0
    assert make_schedule("constant", {"value": 0.5})(at(7)) == 0.5

    def halve(clock, *, every=10):
        return 0.5 ** (clock.epoch // every)

    register_schedule("test_halve", halve)
    try:
        assert make_schedule("test_halve", {"every": 2})(at(5)) == 0.25
        with pytest.raises(ValueError, match="already registered"):
            register_schedule("test_halve", halve)
    finally:
        del SCHEDULES["test_halve"]


def test_bad_names_and_params_are_explained():
    with pytest.raises(ValueError, match=r"schedule\.name must be one of \['constant', 'cyclical'"):
        make_schedule("cosine")
    with pytest.raises(
        ValueError, match=r"schedule\.params\.quench is not a parameter.*'quench_fraction'"
    ):
        make_schedule("quench_anneal", {"quench": 3})
    with pytest.raises(ValueError, match=r"schedule\.params\.cycles must be a finite number > 0"):
        make_schedule("cyclical", {"cycles": 0})
    with pytest.raises(TypeError, match="must be a number"):
        make_schedule("constant", {"value": "high"})


def test_registering_a_schedule_makes_configs_and_training_use_it(tmp_path):
    """docs/design.md "Adding a schedule": one function, one register call."""
    from pathlib import Path

    from spherevae.io.files import read_jsonl
    from spherevae.training.config import load_config
    from spherevae.training.runs import train

    def step_down(clock, *, high=4.0, after=1):
        return high if clock.epoch < after else 0.25

    tiny = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"
    overrides = [f"train.out_dir={tmp_path}", "schedule.name=test_step_down", "train.epochs=2",
                 "schedule.params={high: 2.0}"]
    register_schedule("test_step_down", step_down)
    try:
        cfg = load_config(tiny, overrides)
        epochs = read_jsonl(train(cfg) / "metrics.jsonl")
        # The trainer logs the mean multiplier of each epoch: the schedule's value, exactly.
        assert [e["multiplier"] for e in epochs] == [2.0, 0.25]
    finally:
        del SCHEDULES["test_step_down"]
    with pytest.raises(ValueError, match=r"schedule\.name must be one of"):
        make_schedule("test_step_down")
