"""Binary-classification labels to {-1, +1}.

LIBSVM binary sets write their two classes as -1/+1, 0/1 or 1/2. The training code's
logistic loss log(1 + exp(-y a^T x)) needs y in {-1, +1}, so loaders map the lower class
to -1 and the higher to +1. The coding is found from the values present, trying the pairs
in ``CODINGS`` in order; labels that fit none of them (regression targets, more than two
classes) are returned unchanged. A caller that reads only part of a file can see a single
class and should pass the pair explicitly (``classes=(1, 2)``), as the registry does, or
decide it over all parts: every part contributes ``distinct_labels``, and
``coding_of_union`` picks the coding of their union (mpitrain.problem does so over MPI).

An objective that needs two classes (``BINARY_OBJECTIVES``) cannot take labels that fit no
coding: ``objective_refusal`` words the one-line refusal.
"""
import numpy as np

CODINGS = ((-1.0, 1.0), (0.0, 1.0), (1.0, 2.0))  # (negative, positive), tried in order
BINARY_OBJECTIVES = ("logistic",)  # objectives whose labels must be two classes, mapped to -1/+1
SHOWN = 6  # distinct label values a part reports and a message quotes


def find_classes(labels):
    """The (negative, positive) coding that holds every label, or None."""
    present = np.unique(labels)
    for negative, positive in CODINGS:
        if np.all((present == negative) | (present == positive)):
            return negative, positive
    return None


def normalize_labels(labels, classes=None):
    """Map labels coded as ``classes = (negative, positive)`` to -1.0 / +1.0.

    With ``classes=None`` the coding is found by ``find_classes``; labels fitting no
    coding come back unchanged. A label outside a given pair raises ValueError.
    Returns a new array of the same dtype.
    """
    labels = np.asarray(labels)
    if classes is None:
        classes = find_classes(labels)
        if classes is None:
            return labels.copy()
    negative, positive = classes
    is_negative = labels == negative
    is_positive = labels == positive
    if not np.all(is_negative | is_positive):
        bad = labels[~(is_negative | is_positive)][0]
        raise ValueError(f"label {bad} is neither of classes={classes}")
    return np.where(is_positive, 1.0, -1.0).astype(labels.dtype)


def distinct_labels(labels, keep=SHOWN):
    """(the ``keep`` smallest distinct values, sorted float64; whether there are more).

    Enough to decide a coding over several parts without sending every label: a union of
    at most two values is seen in full, and the smallest ``keep`` values of a union are
    among the smallest ``keep`` of its parts.
    """
    present = np.unique(np.asarray(labels, dtype=np.float64))
    return present[:keep], bool(present.shape[0] > keep)


def coding_of_union(parts, keep=SHOWN):
    """(classes or None, values, more) for the union of ``distinct_labels`` results.

    classes is the (negative, positive) pair of ``find_classes`` over the union, None when
    no coding holds all of it; values the ``keep`` smallest values of the union, and more
    whether it holds others.
    """
    arrays = [values for values, _ in parts]
    union = np.unique(np.concatenate(arrays)) if arrays else np.empty(0)
    more = any(more for _, more in parts) or union.shape[0] > keep
    classes = None if more else find_classes(union)
    return classes, union[:keep], more


def describe_values(values, more=False):
    """'3, 5, 7, 9' (or '1, 2, 3, ...' when there are more), numbers as %g writes them."""
    text = ", ".join(f"{float(value):g}" for value in values)
    return text + ", ..." if more else text


def objective_refusal(objective, values, more=False):
    """Why ``objective`` cannot take labels with these distinct values, or None when it can."""
    if objective not in BINARY_OBJECTIVES or (not more and find_classes(values) is not None):
        return None
    return (f"objective {objective!r} cannot take the labels {describe_values(values, more)}: it needs "
            "two classes coded -1/+1, 0/1 or 1/2; objective 'least_squares' takes any real labels")
