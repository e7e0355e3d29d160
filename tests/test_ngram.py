"""The smoothed byte n-gram baseline: a proper distribution, and the figures it should give."""

import math

import numpy as np
import pytest

from jaxdl.text.ngram import VOCAB, NGramModel


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_next_byte_probabilities_sum_to_one(order):
    model = NGramModel.fit(_bytes("the cat sat on the mat; the hat. " * 3), order=order)
    for history in ("the c", "xyzw", "at th"):
        history = history[-(order - 1) :] if order > 1 else ""
        rows = np.stack([np.r_[_bytes(history), c].astype(np.uint8) for c in range(VOCAB)])
        total = sum(model.probabilities(row)[-1] for row in rows)
        assert total == pytest.approx(1.0, abs=1e-9)


def test_witten_bell_by_hand():
    model = NGramModel.fit(_bytes("abab"), order=2)
    unigram_b = (2 + 1) / (4 + VOCAB)
    # After 'a': C(a)=2 (a->b twice), T(a)=1: P(b|a) = (2 + 1 * P(b)) / (2 + 1).
    assert model.probabilities(_bytes("ab"))[-1] == pytest.approx((2 + unigram_b) / 3)
    # After 'b': seen once (b->a); P(b|b) = (0 + 1 * P(b)) / (1 + 1).
    assert model.probabilities(_bytes("bb"))[-1] == pytest.approx(unigram_b / 2)
    # After an unseen history the unigram is used.
    assert model.probabilities(_bytes("zb"))[-1] == pytest.approx(unigram_b)


def test_higher_orders_fit_structured_text_better():
    text = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(200))
    train, held_out = _bytes(text[:-600]), _bytes(text[-600:])
    bits = [NGramModel.fit(train, order).bits_per_byte(held_out) for order in (1, 2, 3)]
    assert math.log2(VOCAB) > bits[0] > bits[1] > bits[2]


def test_orders_outside_one_uint64_are_refused():
    with pytest.raises(ValueError, match="order"):
        NGramModel.fit(_bytes("abc"), order=9)
    unigram = NGramModel.fit(_bytes("abc"), 1).probabilities(_bytes("ab"))
    assert unigram.shape == (2,) and np.all(unigram == 2 / (3 + VOCAB))
