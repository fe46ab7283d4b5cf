"""Scores on predicted probabilities: accuracy, the official FashionAI metric, error analysis."""

import math

import numpy as np
import pytest

from fashion_keras.evaluation import scoring as S

# --- accuracy ----------------------------------------------------------------------------------


def test_masked_accuracy_ignores_unlabelled_rows():
    probs = [[0.7, 0.3], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]
    # argmax 0, 1, 0, 1 against labels 0, 0, -1, 1: 2 right of the 3 labelled
    assert S.masked_accuracy(probs, [0, 0, -1, 1]) == pytest.approx(2 / 3)
    assert S.masked_accuracy(probs, [-1, -1, -1, -1]) is None


def test_topk_accuracy_hand_computed():
    probs = [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]
    labels = [1, 0, 1]
    # classes strictly above the true class: row 0: {0.5} -> 1; row 1: {0.2, 0.7} -> 2;
    # row 2: {0.4} -> 1 (the equal 0.3 does not count)
    assert S.topk_accuracy(probs, labels, 1) == 0.0
    assert S.topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
    assert S.topk_accuracy(probs, labels, 3) == 1.0
    assert S.topk_accuracy(probs, [-1, -1, -1], 2) is None


def test_ties_argmax_takes_first_index_but_top_k_counts_ties_as_hits():
    probs = [[0.4, 0.4, 0.2]]
    assert S.masked_accuracy(probs, [0]) == 1.0
    assert S.masked_accuracy(probs, [1]) == 0.0  # argmax picks class 0
    assert S.topk_accuracy(probs, [1], 1) == 1.0  # like tf.math.in_top_k


def test_accuracy_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"bad values \[3\]"):
        S.masked_accuracy([[0.5, 0.5]], [3])
    with pytest.raises(ValueError, match=r"must have shape \(2,\)"):
        S.masked_accuracy([[0.5, 0.5], [0.5, 0.5]], [0])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 2\].*got 3"):
        S.topk_accuracy([[0.5, 0.5]], [0], 3)
    with pytest.raises(ValueError, match="non-finite values, first at row 1"):
        S.masked_accuracy([[0.5, 0.5], [np.nan, 1.0]], [0, 1])


# --- per-class truth and baselines --------------------------------------------------------------


def test_class_counts_skip_unlabelled_rows():
    np.testing.assert_array_equal(S.class_counts([0, 2, 2, -1, 1, 2], 4), [1, 1, 3, 0])
    np.testing.assert_array_equal(S.class_counts([], 3), [0, 0, 0])
    np.testing.assert_array_equal(S.class_counts([-1, -1], 2), [0, 0])
    with pytest.raises(ValueError, match=r"bad values \[4\]"):
        S.class_counts([0, 4], 4)


# argmax 0, 1, 1, 1, 1, 2 against labels 0, 0, 1, 1, 2, -1 (the last row unlabelled):
#   class a: 2 labelled, 1 right (recall 1/2); predicted once, right (precision 1)
#   class b: 2 labelled, both right (recall 1); predicted 4 times, 2 right (precision 1/2)
#   class c: 1 labelled, wrong (recall 0); never predicted on a labelled row (precision n/a)
#   class d: no labelled row, never predicted (both n/a)
PROBS_C = [
    [0.6, 0.2, 0.1, 0.1],
    [0.3, 0.5, 0.1, 0.1],
    [0.1, 0.7, 0.1, 0.1],
    [0.2, 0.4, 0.3, 0.1],
    [0.1, 0.5, 0.3, 0.1],
    [0.1, 0.1, 0.7, 0.1],
]
LABELS_C = [0, 0, 1, 1, 2, -1]


def test_per_class_scores_hand_computed():
    got = S.per_class_scores(PROBS_C, LABELS_C, ["a", "b", "c", "d"])
    assert [s.to_dict() for s in got] == [
        {"name": "a", "support": 2, "predicted": 1, "recall": 0.5, "precision": 1.0},
        {"name": "b", "support": 2, "predicted": 4, "recall": 1.0, "precision": 0.5},
        {"name": "c", "support": 1, "predicted": 0, "recall": 0.0, "precision": None},
        {"name": "d", "support": 0, "predicted": 0, "recall": None, "precision": None},
    ]
    with pytest.raises(ValueError, match="3 class names for 4 probability columns"):
        S.per_class_scores(PROBS_C, LABELS_C, ["a", "b", "c"])


def test_balanced_accuracy_is_the_mean_recall_over_classes_present():
    # recalls 1/2, 1, 0 (class d has no labelled row and is left out); accuracy is 3/5
    assert S.balanced_accuracy(PROBS_C, LABELS_C) == pytest.approx(0.5)
    assert S.masked_accuracy(PROBS_C, LABELS_C) == pytest.approx(0.6)
    assert S.balanced_accuracy(PROBS_C, [-1] * 6) is None
    # always one class: 1 / (classes present), whatever their sizes
    assert S.balanced_accuracy([[0.9, 0.05, 0.05]] * 5, [0, 0, 0, 1, 2]) == pytest.approx(1 / 3)


def test_majority_baseline_takes_the_class_from_the_training_counts():
    # the training split's majority is class 1, rare in the labels scored: 1 of 4 labelled
    assert S.majority_baseline([0, 0, 0, 1, -1], [10, 30, 5]) == (1, 0.25)
    assert S.majority_baseline([0, 1], [5, 5]) == (0, 0.5)  # ties: the first class
    assert S.majority_baseline([-1, -1], [1, 2]) == (1, None)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        S.majority_baseline([0], [])
    with pytest.raises(ValueError, match=r"bad values \[2\]"):
        S.majority_baseline([2], [3, 4])


def test_head_summary_of_a_collapsed_head_does_not_beat_its_baseline():
    """The issue's neckline: v_neck 268 / halter 58 in train; on 47 v_neck + 21 halter the head
    answers v_neck every time: accuracy 47/68, exactly the baseline, balanced accuracy 1/2."""
    labels = [0] * 47 + [1] * 21 + [-1]
    probs = [[0.8, 0.2]] * len(labels)
    got = S.head_summary(probs, labels, ["v_neck", "halter"], train_counts=[268, 58])
    assert got == {
        "num_labelled": 68,
        "accuracy": pytest.approx(47 / 68),
        "balanced_accuracy": pytest.approx(0.5),
        "majority_class": "v_neck",
        "majority_baseline": pytest.approx(47 / 68),
        "baseline_from": "the training split",
        "beats_baseline": False,
        "per_class": [
            {
                "name": "v_neck",
                "support": 47,
                "predicted": 68,
                "recall": 1.0,
                "precision": pytest.approx(47 / 68),
            },
            {"name": "halter", "support": 21, "predicted": 0, "recall": 0.0, "precision": None},
        ],
    }
    # six of the halter rows right, one v_neck row lost: 52/68 beats 47/68
    probs = [[0.8, 0.2]] * 46 + [[0.3, 0.7]] * 7 + [[0.8, 0.2]] * 15 + [[0.5, 0.5]]
    better = S.head_summary(probs, labels, ["v_neck", "halter"], train_counts=[268, 58])
    assert better["accuracy"] == pytest.approx(52 / 68) and better["beats_baseline"] is True
    assert better["balanced_accuracy"] == pytest.approx((46 / 47 + 6 / 21) / 2)


def test_head_summary_falls_back_to_the_labels_evaluated():
    probs = [[0.9, 0.1, 0.0]] * 4
    labels = [0, 0, 0, 1]
    # from the training split (class 1 there): 1/4, and the head's 3/4 beats it
    trained = S.head_summary(probs, labels, ["a", "b", "c"], train_counts=[1, 9, 0])
    assert (trained["majority_class"], trained["majority_baseline"]) == ("b", 0.25)
    assert trained["beats_baseline"] is True
    # from the labels themselves (class 0): 3/4, which the same answers only equal
    own = S.head_summary(probs, labels, ["a", "b", "c"])
    assert (own["majority_class"], own["majority_baseline"]) == ("a", 0.75)
    assert own["baseline_from"] == "the labels evaluated" and own["beats_baseline"] is False
    empty = S.head_summary(probs, [-1] * 4, ["a", "b", "c"], train_counts=[1, 9, 0])
    assert empty["accuracy"] is None and empty["majority_baseline"] is None
    assert empty["beats_baseline"] is None and empty["num_labelled"] == 0
    with pytest.raises(ValueError, match=r"train_counts has shape \(2,\), expected \(3,\)"):
        S.head_summary(probs, labels, ["a", "b", "c"], train_counts=[1, 9])


# --- the official FashionAI metric -------------------------------------------------------------

# Rows (p = max, k = argmax, true char at k):
#   [.7 .2 .1] "ynn": p .7, k 0 -> y correct
#   [.1 .6 .3] "ynn": p .6, k 1 -> n wrong
#   [.2 .3 .5] "nny": p .5, k 2 -> y correct
#   [.4 .35 .25] "nym": p .4, k 0 -> n wrong
PROBS_A = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]]
LABELS_A = ["ynn", "ynn", "nny", "nym"]
# P(.7) = 1/1, P(.6) = 1/2, P(.5) = 2/3, P(.4) = 2/4
AP_A = (1 + 1 / 2 + 2 / 3 + 2 / 4) / 4  # = 0.6667
BP_A = 2 / 4


def test_task_ap_hand_computed():
    r = S.task_ap(PROBS_A, LABELS_A, task="a")
    assert r.ap == pytest.approx(AP_A)
    assert r.basic_precision == pytest.approx(BP_A)
    assert (r.num_rows, r.num_counted, r.num_thresholds, r.skipped_thresholds) == (4, 4, 4, 0)
    assert r.to_dict()["task"] == "a"


def test_m_rows_are_not_counted_and_an_all_m_threshold_is_skipped():
    # an extra row [.1 .8 .1] "ymn": p .8, k 1 -> m, counted neither way. At t = .8 it is the
    # only output row: counted 0, P undefined, skipped. Every lower threshold lets it through
    # without changing correct or counted, so AP and P(0) are those of case A.
    r = S.task_ap([*PROBS_A, [0.1, 0.8, 0.1]], [*LABELS_A, "ymn"])
    assert r.ap == pytest.approx(AP_A)
    assert r.basic_precision == pytest.approx(BP_A)
    assert (r.num_rows, r.num_counted, r.num_thresholds, r.skipped_thresholds) == (5, 4, 5, 1)


def test_m_row_below_the_top_changes_nothing_at_its_threshold():
    # [.9 .1] "yn" correct at .9; [.2 .8] "ym": k 1 -> m at .8; [.3 .7] "ny" correct at .7;
    # [.6 .4] "ny" wrong at .6.  P(.9) = 1/1, P(.8) = 1/1 (m not counted), P(.7) = 2/2,
    # P(.6) = 2/3 -> AP = (1 + 1 + 1 + 2/3) / 4 = 0.9167; P(0) = 2/3
    r = S.task_ap([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]], ["yn", "ym", "ny", "ny"])
    assert r.ap == pytest.approx((3 + 2 / 3) / 4)
    assert r.basic_precision == pytest.approx(2 / 3)
    assert r.skipped_thresholds == 0 and r.num_counted == 3


def test_tied_confidences_form_one_threshold_letting_all_of_them_through():
    # [.9 .1] "ny": p .9, k 0 -> n wrong; [.2 .8] "ny": p .8 correct;
    # [.6 .4] "yn": p .6 correct; [.4 .6] "yn": p .6, k 1 -> n wrong.
    # Thresholds .9, .8, .6 (the tie is ONE threshold, both rows output):
    # P(.9) = 0/1, P(.8) = 1/2, P(.6) = 2/4 -> AP = (0 + 1/2 + 1/2) / 3 = 1/3.
    # (Per-row thresholds would give 4 values and a different mean.)
    probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]]
    r = S.task_ap(probs, ["ny", "ny", "yn", "yn"])
    assert r.num_thresholds == 3
    assert r.ap == pytest.approx(1 / 3)
    assert r.basic_precision == pytest.approx(1 / 2)
    # the row order does not matter
    r2 = S.task_ap(probs[::-1], ["ny", "ny", "yn", "yn"][::-1])
    assert r2.ap == pytest.approx(1 / 3)


def test_argmax_ties_pick_the_first_class():
    # [.5 .5]: k = 0. "yn" -> correct, "ny" -> wrong
    assert S.task_ap([[0.5, 0.5]], ["yn"]).ap == 1.0
    assert S.task_ap([[0.5, 0.5]], ["ny"]).ap == 0.0


def test_all_m_task_has_undefined_ap_and_is_left_out_of_map():
    all_m = S.task_ap([[0.9, 0.1], [0.3, 0.7]], ["my", "ym"], task="c")
    assert all_m.ap is None and all_m.basic_precision is None
    assert all_m.skipped_thresholds == all_m.num_thresholds == 2
    ties = ([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]], ["ny", "ny", "yn", "yn"])
    score = S.fashionai_score(
        {"a": PROBS_A, "b": ties[0], "c": [[0.9, 0.1], [0.3, 0.7]]},
        {"a": LABELS_A, "b": ties[1], "c": ["my", "ym"]},
    )
    # mAP = (AP_A + 1/3) / 2 = (0.6667 + 0.3333) / 2 = 0.5; BP = (1/2 + 1/2) / 2 = 0.5
    assert score.map == pytest.approx((AP_A + 1 / 3) / 2)
    assert score.basic_precision == pytest.approx(0.5)
    assert score.skipped_tasks == ("c",)
    notes = "\n".join(score.notes())
    assert "c: 2 of 2 thresholds skipped" in notes and "left out of mAP" in notes
    d = score.to_dict()
    assert d["skipped_tasks"] == ["c"] and d["per_task"]["c"]["ap"] is None


def test_array_truth_equals_label_strings_and_drops_unlabelled_rows():
    y, m = S.label_string_to_arrays(LABELS_A, 3)
    np.testing.assert_array_equal(y, [0, 0, 2, 1])
    assert m.tolist() == [[False] * 3, [False] * 3, [False] * 3, [False, False, True]]
    from_arrays = S.task_ap(PROBS_A, (y, m))
    assert from_arrays == S.task_ap(PROBS_A, LABELS_A)
    # an extra row with y = -1 is dropped
    y2, m2 = np.append(y, -1), np.vstack([m, np.zeros((1, 3), bool)])
    r = S.task_ap([*PROBS_A, [0.0, 0.0, 1.0]], (y2, m2))
    assert r.ap == pytest.approx(AP_A) and r.num_rows == 4


def test_fashionai_rejects_bad_truth():
    with pytest.raises(ValueError, match=r"label string 1 is 'nn': expected exactly one 'y'"):
        S.label_string_to_arrays(["yn", "nn"], 2)
    with pytest.raises(ValueError, match=r"label string 0 is 'ynx'"):
        S.label_string_to_arrays(["ynx"], 3)
    with pytest.raises(ValueError, match="2 label strings for 1 rows"):
        S.task_ap([[0.5, 0.5]], ["yn", "ny"])
    with pytest.raises(ValueError, match=r"rows \[0\] mark their y class as m"):
        S.task_ap([[0.5, 0.5]], (np.array([0]), np.array([[True, False]])))
    with pytest.raises(ValueError, match="same tasks"):
        S.fashionai_score({"a": [[1.0, 0.0]]}, {"b": ["yn"]})


def brute_force_ap(probs, labels):
    """The rule read literally: loop over thresholds, then over rows."""
    rows = []
    for row, s in zip(probs, labels, strict=True):
        k = max(range(len(row)), key=lambda j: (row[j], -j))  # first index among ties
        rows.append((row[k], s[k]))
    thresholds = sorted({p for p, _ in rows})
    precisions, skipped = [], 0
    for t in thresholds:
        correct = counted = 0
        for p, ch in rows:
            if p < t:
                continue
            if ch == "y":
                correct += 1
                counted += 1
            elif ch == "n":
                counted += 1
        if counted == 0:
            skipped += 1
        else:
            precisions.append(correct / counted)
    correct0 = sum(ch == "y" for _, ch in rows)
    counted0 = sum(ch != "m" for _, ch in rows)
    ap = sum(precisions) / len(precisions) if precisions else None
    bp = correct0 / counted0 if counted0 else None
    return ap, bp, len(thresholds), skipped


def test_property_matches_brute_force_on_random_inputs_with_many_ties():
    rng = np.random.default_rng(1234)
    saw_ties = saw_skip = saw_undefined = 0
    for _ in range(400):
        n, c = int(rng.integers(1, 30)), int(rng.integers(2, 7))
        decimals = int(rng.integers(1, 3))  # 1 or 2 decimals: many tied confidences
        probs = np.round(rng.dirichlet(np.full(c, 0.7), size=n), decimals)
        labels = []
        for _ in range(n):
            chars = rng.choice(list("nm"), size=c, p=[0.6, 0.4])
            chars[rng.integers(c)] = "y"
            labels.append("".join(chars))
        ap, bp, num_t, skipped = brute_force_ap(probs.tolist(), labels)
        r = S.task_ap(probs, labels)
        assert (r.num_thresholds, r.skipped_thresholds) == (num_t, skipped)
        for got, want in ((r.ap, ap), (r.basic_precision, bp)):
            if want is None:
                assert got is None
            else:
                assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
        saw_ties += num_t < n
        saw_skip += skipped > 0
        saw_undefined += ap is None
    # the random cases did exercise the edge cases
    assert saw_ties > 100 and saw_skip > 20 and saw_undefined > 0


# --- error analysis ----------------------------------------------------------------------------


def test_confusion_matrix_and_most_confused_pairs():
    labels = [0, 0, 0, 1, 1, 1, 1, 2, 2, -1]
    preds = [0, 1, 1, 1, 1, 2, 0, 2, 0, 2]
    cm = S.confusion_matrix(labels, preds, 3)
    # true 0: pred 0 x1, 1 x2; true 1: 1 x2, 2 x1, 0 x1; true 2: 2 x1, 0 x1; -1 row ignored
    np.testing.assert_array_equal(cm, [[1, 2, 0], [1, 2, 1], [1, 0, 1]])
    pairs = S.most_confused_pairs(cm, ["a", "b", "c"], top=3)
    # off-diagonal counts: a->b 2 (2/3); b->a 1 (1/4); b->c 1 (1/4); c->a 1 (1/2)
    # by count, then by fraction: a->b, c->a, then b->a (row/column order before b->c)
    assert pairs == [("a", "b", 2, 2 / 3), ("c", "a", 1, 1 / 2), ("b", "a", 1, 1 / 4)]
    assert pairs[0].fraction == pytest.approx(2 / 3)
    assert len(S.most_confused_pairs(cm, ["a", "b", "c"])) == 4
    assert S.most_confused_pairs(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_confusion_matrix_rejects_bad_values():
    with pytest.raises(ValueError, match=r"preds must be in \[0, 3\).*bad values \[5\]"):
        S.confusion_matrix([0, 1], [5, 1], 3)
    with pytest.raises(ValueError, match="expected \\(2, 2\\) for 2 class names"):
        S.most_confused_pairs(np.zeros((3, 3)), ["a", "b"])


def test_top_losses_hand_computed():
    probs = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.0, 1.0], [0.6, 0.4]]
    labels = [0, 0, -1, 0, 0]
    # losses: -log .9 = 0.105, -log .2 = 1.609, (unlabelled), -log 1e-12 = 27.63, -log .6 = 0.511
    idx, losses = S.top_losses(probs, labels, 2)
    np.testing.assert_array_equal(idx, [3, 1])
    np.testing.assert_allclose(losses, [-math.log(1e-12), -math.log(0.2)])
    idx, losses = S.top_losses(probs, labels, 10)  # only 4 rows are labelled
    np.testing.assert_array_equal(idx, [3, 1, 4, 0])
    assert S.top_losses(probs, labels, 0)[0].size == 0
    with pytest.raises(ValueError, match="k must be an integer >= 0, got -1"):
        S.top_losses(probs, labels, -1)
