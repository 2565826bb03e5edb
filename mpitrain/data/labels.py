"""Binary-classification labels to {-1, +1}.

LIBSVM binary sets write their two classes as -1/+1, 0/1 or 1/2. The training code's
logistic loss log(1 + exp(-y a^T x)) needs y in {-1, +1}, so loaders map the lower class
to -1 and the higher to +1. The coding is found from the values present, trying the pairs
in ``CODINGS`` in order; labels that fit none of them (regression targets, more than two
classes) are returned unchanged. A caller that reads only part of a file can see a single
class and should pass the pair explicitly (``classes=(1, 2)``), as the registry does.
"""
import numpy as np

CODINGS = ((-1.0, 1.0), (0.0, 1.0), (1.0, 2.0))  # (negative, positive), tried in order


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
