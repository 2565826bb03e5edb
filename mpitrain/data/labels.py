"""Labels coded for the objective: two classes to {-1, +1}, C classes to indices 0..C-1.

Which coding an objective needs is ``label_coding(objective, head)``: "binary" (logistic,
and an mlp or torch model with a logistic head), "classes" (softmax, and an mlp or torch model
with a softmax head) or "values" (least squares, and an mlp or torch model with a squared head).

Binary. LIBSVM binary sets write their two classes as -1/+1, 0/1 or 1/2. The logistic loss
log(1 + exp(-y a^T x)) needs y in {-1, +1}, so loaders map the lower class to -1 and the
higher to +1. The coding is found from the values present, trying the pairs in ``CODINGS``
in order; labels that fit none of them (regression targets, more than two classes) are
returned unchanged. A caller that reads only part of a file can see a single class and
should pass the pair explicitly (``classes=(1, 2)``), as the registry does, or decide it
over all parts: every part contributes ``distinct_labels``, and ``coding_of_union`` picks
the coding of their union (mpitrain.problem does so over MPI). An objective that needs two
classes cannot take labels that fit no coding: ``objective_refusal`` words the refusal.

Classes. A softmax head over C classes wants the label of a row as its class index
0..C-1, stored as a float of the data's dtype. The classes are the distinct integer label
values of the whole set, sorted: every part contributes ``all_distinct_labels`` (every
value it holds, up to ``MAX_CLASSES``), ``classes_of_union`` checks their union (integers,
at least two, at most ``MAX_CLASSES``) and returns it, and ``to_class_indices`` maps each
part's labels, so a part that lacks a class codes the others as every other part does.
Both steps are pure: fed the same allgathered parts, every rank decides (and refuses) alike.
"""
import numpy as np

CODINGS = ((-1.0, 1.0), (0.0, 1.0), (1.0, 2.0))  # (negative, positive), tried in order
SHOWN = 6  # distinct label values a part reports and a message quotes
MAX_CLASSES = 1000  # most classes a multiclass set may hold (more: regression targets, or ids)

# How each objective takes its labels: "binary" (two classes, mapped to -1/+1), "classes"
# (class indices 0..C-1) or "values" (as they are). An objective in HEADED_OBJECTIVES takes
# the coding of its head (config field objective.head) instead.
OBJECTIVE_CODINGS = {"logistic": "binary", "least_squares": "values", "softmax": "classes"}
HEAD_CODINGS = {"logistic": "binary", "squared": "values", "softmax": "classes"}
HEADED_OBJECTIVES = ("mlp", "torch")
BINARY_OBJECTIVES = tuple(name for name, coding in OBJECTIVE_CODINGS.items() if coding == "binary")
MULTICLASS_OBJECTIVES = tuple(name for name, coding in OBJECTIVE_CODINGS.items() if coding == "classes")


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


def label_coding(objective, head=None) -> str:
    """"binary", "classes" or "values": how ``objective`` takes its labels.

    ``head`` (config field objective.head) decides for an objective in
    ``HEADED_OBJECTIVES`` ("mlp") and is ignored for the others. ValueError naming the
    objective or the head when it is not known.
    """
    if objective in HEADED_OBJECTIVES:
        if head not in HEAD_CODINGS:
            raise ValueError(f"objective {objective!r} needs a head, one of {', '.join(map(repr, HEAD_CODINGS))}; "
                             f"got {head!r}")
        return HEAD_CODINGS[head]
    if objective not in OBJECTIVE_CODINGS:
        raise ValueError(f"unknown objective {objective!r}; known: "
                         f"{', '.join(map(repr, (*OBJECTIVE_CODINGS, *HEADED_OBJECTIVES)))}")
    return OBJECTIVE_CODINGS[objective]


def objective_refusal(objective, values, more=False, head=None):
    """Why ``objective`` (with ``head``, for an mlp) cannot take labels with these distinct
    values, or None when it can. Only binary codings refuse here; a multiclass objective's
    refusals are ``classes_of_union``'s, an unknown objective's ``label_coding``'s."""
    headed = objective in HEADED_OBJECTIVES
    coding = HEAD_CODINGS.get(head) if headed else OBJECTIVE_CODINGS.get(objective)
    if coding != "binary" or (not more and find_classes(values) is not None):
        return None
    if headed:
        return (f"objective {objective!r} with head {head!r} cannot take the labels {describe_values(values, more)}: "
                "it needs two classes coded -1/+1, 0/1 or 1/2; head 'softmax' takes C classes, head 'squared' "
                "any real labels")
    return (f"objective {objective!r} cannot take the labels {describe_values(values, more)}: it needs "
            "two classes coded -1/+1, 0/1 or 1/2; objective 'least_squares' takes any real labels")


def all_distinct_labels(labels, limit=MAX_CLASSES):
    """(every distinct label value, sorted float64; whether there are more than ``limit``).

    A part's contribution to ``classes_of_union``: at most ``limit`` values travel (the
    smallest, when there are more), so a set of regression targets costs no more than a
    set of ``limit`` classes. Never raises: the refusals come from ``classes_of_union``,
    which every rank runs on the same allgathered parts.
    """
    return distinct_labels(labels, keep=limit)


def classes_of_union(parts, limit=MAX_CLASSES) -> np.ndarray:
    """The classes of a multiclass set: the sorted union of its parts' ``all_distinct_labels``.

    Returns a float64 array of C >= 2 integer values. ValueError, one line, when a value is
    not an integer (naming it: regression targets are not classes), when there are more
    than ``limit`` values, or fewer than two.
    """
    arrays = [np.asarray(values, dtype=np.float64) for values, _ in parts]
    union = np.unique(np.concatenate(arrays)) if arrays else np.empty(0)
    more = any(more for _, more in parts) or union.shape[0] > limit
    fractional = union[~_is_integer(union)]
    if fractional.shape[0]:
        raise ValueError(f"label {fractional[0]:g} is not a class: a multiclass model takes integer labels "
                         "(regression targets are not classes; objective 'least_squares' takes any real labels)")
    if more:
        raise ValueError(f"more than {limit} distinct labels ({describe_values(union[:SHOWN], True)}): "
                         f"a multiclass model takes at most {limit} classes")
    if union.shape[0] < 2:
        found = f"one class only (label {union[0]:g})" if union.shape[0] else "no labels"
        raise ValueError(f"{found}: a multiclass model needs at least two classes")
    return union


def to_class_indices(labels, classes) -> np.ndarray:
    """Labels mapped to the index of their value in ``classes``, as floats of their dtype.

    labels   1-D float array, integer values.
    classes  the sorted class values (``classes_of_union``, or a registry entry's classes).
    Returns a new array of labels.dtype holding 0.0 .. C-1. ValueError naming the first
    label that is not an integer or not one of ``classes``.
    """
    labels = np.asarray(labels)
    classes = np.asarray(classes, dtype=np.float64)
    if classes.ndim != 1 or classes.shape[0] < 1 or np.any(np.diff(classes) <= 0):
        raise ValueError(f"classes must be sorted distinct values, got {classes.tolist()}")
    fractional = labels[~_is_integer(labels)]
    if fractional.shape[0]:
        raise ValueError(f"label {float(fractional[0]):g} is not a class: a multiclass model takes integer labels "
                         "(regression targets are not classes)")
    index = np.minimum(np.searchsorted(classes, labels), classes.shape[0] - 1)
    unknown = classes[index] != labels
    if np.any(unknown):
        raise ValueError(f"label {float(labels[unknown][0]):g} is not one of the {classes.shape[0]} classes "
                         f"({describe_values(classes[:SHOWN], classes.shape[0] > SHOWN)})")
    return index.astype(labels.dtype)


def _is_integer(values):
    """Elementwise: finite and a whole number."""
    values = np.asarray(values)
    return np.isfinite(values) & (values == np.round(values))
