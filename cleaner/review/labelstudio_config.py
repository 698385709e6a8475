"""The Label Studio labeling config both directions of the round trip speak.

An ``Image`` object (its data key ``image``) and a ``Choices`` control named
``decision`` with one ``Choice value=...`` per answer: the classes (from
``queue.json``), then ``keep``, ``drop`` and ``unsure``. The export writes
this config beside its tasks; the import reads each annotation's answer from
that control. As Label Studio documents it: the image classification template,
https://labelstud.io/tags/choices.html, https://labelstud.io/templates/image_classification.html
(``tags/choices.md``, ``templates/image_classification.md``); a ``Header``
value may hold ``$field`` variables of the task data (``guide/tasks.md``,
"How to retrieve data").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

# Names in the labeling config: the Image object (and its data key) and the Choices control.
IMAGE = "image"
CONTROL = "decision"
# The answers besides the classes, in the order the config lists them.
DECISION_CHOICES = ("keep", "drop", "unsure")


def labeling_config(classes: Sequence[str]) -> str:
    """The Label Studio labeling config (XML) of the exported tasks: image, context, choices."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(c)}/>" for c in (*classes, *DECISION_CHOICES)
    )
    return (
        "<View>\n"
        f'  <Image name="{IMAGE}" value="${IMAGE}"/>\n'
        '  <Header value="given: $given_label | suggested: $suggested_label | '
        'issue: $issue | label quality: $label_quality"/>\n'
        '  <Header value="$note"/>\n'
        f'  <Choices name="{CONTROL}" toName="{IMAGE}" choice="single-radio" '
        'showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def cell_text(row: Mapping[Any, Any], col: str) -> str:
    """A queue row's cell as text, stripped; blank when the row has no such column."""
    value = row.get(col)
    return "" if value is None else str(value).strip()
