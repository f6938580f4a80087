import pytest
import torch

from spherevae._utils.validation import check_choice, check_latents, check_positive


def test_check_latents_accepts_batches():
    x = torch.randn(3, 4)
    assert check_latents(x, "x") is x


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(3, 1), "n >= 2"),
        (torch.tensor(1.0), "scalar"),
        (torch.tensor([[1.0, float("nan")]]), "NaN or inf"),
        (torch.tensor([[1.0, float("inf")]]), r"first at index \(0, 1\)"),
    ],
)
def test_check_latents_rejects(x, match):
    with pytest.raises(ValueError, match=match):
        check_latents(x, "x")


def test_check_latents_rank_and_type():
    with pytest.raises(ValueError, match=r"\(batch, n\)"):
        check_latents(torch.randn(2, 3, 4), "x", ndim=2)
    with pytest.raises(TypeError, match="floating-point"):
        check_latents(torch.ones(2, 3, dtype=torch.int64), "x")
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        check_latents([[1.0, 2.0]], "x")


def test_check_positive_and_choice():
    assert check_positive(2, "a") == 2.0
    with pytest.raises(ValueError, match="a must be a finite number > 0"):
        check_positive(0, "a")
    with pytest.raises(ValueError, match="a must be a finite number"):
        check_positive(float("nan"), "a")
    assert check_positive(0, "a", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"one of \['x', 'y'\], got 'z'"):
        check_choice("z", "name", {"y": 1, "x": 2})


def test_check_mu_names_the_expected_shape() -> None:
    import pytest
    import torch

    from spherevae._utils.validation import check_mu

    assert check_mu(torch.zeros(3, 4), 4).shape == (3, 4)
    with pytest.raises(ValueError, match=r"mu must have shape \(batch, 5\), got \(3, 4\)"):
        check_mu(torch.zeros(3, 4), 5)
    with pytest.raises(ValueError, match="mu"):
        check_mu(torch.zeros(4), 4)
