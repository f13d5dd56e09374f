"""Training settings that do not need a training run."""

from convert.sim.data import evaluation_subset
from convert.train.train import REFERENCE


def test_validation_during_training_is_a_fixed_subset_of_at_most_eval_max_slices():
    assert REFERENCE.eval_max == 400
    # 0.2.0's 120 validation slices: all of them, as before the cap.
    assert evaluation_subset(list(range(120)), REFERENCE.eval_max, 0) == list(range(120))
    big = evaluation_subset(list(range(1280)), REFERENCE.eval_max, 0)
    assert len(big) == 400 == len(set(big)) and big == sorted(big) and max(big) < 1280
    assert big == evaluation_subset(list(range(1280)), REFERENCE.eval_max, 0)     # reproducible
    assert big != evaluation_subset(list(range(1280)), REFERENCE.eval_max, 1)
