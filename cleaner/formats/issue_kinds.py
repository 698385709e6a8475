"""What each kind of queue row is, and which decisions fit it.

One table read by the queue writer, the gallery, the review page and
``apply``: a ``label`` row proposes a class; an ``outlier`` or
``near_duplicate`` row says the image is odd or doubled, not which class it
is, so it has no suggestion and no "accept suggestion" (a relabel must name
its class); a ``leakage`` row is a train image that also sits in the test or
unlabeled rows, and the only questions are keep or drop. An image-quality row
(``dark``, ``light``, ``blurry``, ``low_information``, ``odd_size``,
``odd_aspect_ratio``, ``grayscale``; :mod:`cleaner.ranking.image_quality`) is
there for its pixels, not its label: it is kept, dropped or marked unsure, never
relabelled (an image whose label the model also doubts is a ``label`` row, which
takes every decision, with the image finding in its note). Kinds not listed
here (``label``, ``group_inconsistent``, attribute names such as ``gender``,
``*_boundary``, ``unlabeled``) take every decision.
"""

from __future__ import annotations

from cleaner.formats.audit import ACTIONS as DECISIONS

GROUP_PREFIX = "group:"  # sample_id of a queue row that stands for a whole group

LABEL = "label"  # the given label is likely wrong; the row suggests a class
UNLABELED = "unlabeled"  # an unlabeled row worth a label (active learning)
OUTLIER = "outlier"
NEAR_DUPLICATE = "near_duplicate"
LEAKAGE = "leakage"
# A train row drawn at random (``flag --audit N``): its decision measures the labels and
# the models without the bias of the ranked rows. No suggestion: the reviewer names the
# class without being steered toward the model's.
AUDIT = "audit"

# Image-quality kinds (CleanVision's issue types), in the order a row is named by the
# first it has: a dark or light image explains its low information and weak edges, low
# information explains weak edges, a stretched image has an odd size and soft edges.
DARK = "dark"
LIGHT = "light"  # overexposed
LOW_INFORMATION = "low_information"
ODD_ASPECT_RATIO = "odd_aspect_ratio"
ODD_SIZE = "odd_size"
BLURRY = "blurry"
GRAYSCALE = "grayscale"  # among colour images
IMAGE_QUALITY = (DARK, LIGHT, LOW_INFORMATION, ODD_ASPECT_RATIO, ODD_SIZE, BLURRY, GRAYSCALE)

# Kinds whose rows carry no suggested label.
NO_SUGGESTION = frozenset({OUTLIER, NEAR_DUPLICATE, LEAKAGE, AUDIT, *IMAGE_QUALITY})
# Kinds that pair the row with another image (the queue's ``partner`` column).
PAIRED = frozenset({NEAR_DUPLICATE, LEAKAGE})

_ALLOWED: dict[str, tuple[str, ...]] = {
    OUTLIER: ("keep", "relabel", "drop", "unsure"),
    NEAR_DUPLICATE: ("keep", "relabel", "drop", "unsure"),
    LEAKAGE: ("keep", "drop"),
    # Unsure is a real answer for a soft finding (is this image too blurry to teach?):
    # apply weighs the row down. A leakage row is a fact about files, so it has none.
    **dict.fromkeys(IMAGE_QUALITY, ("keep", "drop", "unsure")),
}


def _kind(issue: str) -> str:
    # A spreadsheet may have touched the cell: " Outlier" is still an outlier.
    return issue.strip().lower()


def allowed_decisions(issue: str) -> tuple[str, ...]:
    """The decisions that fit a row of kind ``issue``."""
    return _ALLOWED.get(_kind(issue), DECISIONS)


def has_suggestion(issue: str) -> bool:
    """Whether rows of kind ``issue`` propose a class (and so offer "accept suggestion")."""
    return _kind(issue) not in NO_SUGGESTION


# How a decision reads in a sentence ("a leakage row is kept or dropped").
_DONE = {"keep": "kept", "relabel": "relabelled", "drop": "dropped", "unsure": "marked unsure"}
# The order the gallery and the review page list a row's decisions in.
_SHOWN = ("keep", "drop", "unsure", "relabel")


def _a_row(issue: str) -> str:
    kind = issue.strip()
    return ("an " if kind[:1].lower() in "aeiou" else "a ") + kind + " row"


def refusal(issue: str, decision: str, new_label: str) -> str | None:
    """Why ``decision`` does not fit a row of kind ``issue``, or ``None`` when it does.

    ``new_label`` is the cell as written: blank means "the suggestion", which a
    kind without a suggestion does not have, whatever an older queue's
    ``suggested_label`` cell holds.
    """
    allowed = allowed_decisions(issue)
    if decision not in allowed:
        words = [_DONE[d] for d in allowed]
        listed = ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
        return f"{_a_row(issue)} is {listed}, not {decision}"
    if decision == "relabel" and not new_label.strip() and not has_suggestion(issue):
        return f"{_a_row(issue)} has no suggested label: write the class in new_label"
    return None


def actions_text(issue: str) -> str:
    """The decisions that fit a row, in words: "keep · drop · unsure · relabel (name the class)"."""
    allowed = allowed_decisions(issue)
    named = "suggested or any class" if has_suggestion(issue) else "name the class"
    relabel = f"relabel ({named})"
    return " \u00b7 ".join(relabel if d == "relabel" else d for d in _SHOWN if d in allowed)
