"""Galaxy Zoo decision trees: GZ DECaLS DR5 (10 questions, 34 answers) and GZ2 (Kaggle).

A question is asked only if its parent answer was given; the column names follow the public
catalogues: ``{question}_{answer}`` (vote count), ``{question}_{answer}_fraction`` and
``{question}_total-votes`` for GZ DECaLS; ``Class{q}.{a}`` weighted fractions for GZ2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    name: str
    answers: tuple[str, ...]
    # (question, answer) that must be given for this question to be asked; None = always asked
    asked_if: tuple[str, str] | None

    def answer_columns(self, suffix: str = "") -> list[str]:
        return [f"{self.name}_{a}{suffix}" for a in self.answers]

    @property
    def total_column(self) -> str:
        return f"{self.name}_total-votes"


DECALS_DR5 = (
    Question("smooth-or-featured", ("smooth", "featured-or-disk", "artifact"), None),
    Question("disk-edge-on", ("yes", "no"), ("smooth-or-featured", "featured-or-disk")),
    Question("has-spiral-arms", ("yes", "no"), ("disk-edge-on", "no")),
    Question("bar", ("strong", "weak", "no"), ("disk-edge-on", "no")),
    Question("bulge-size", ("dominant", "large", "moderate", "small", "none"), ("disk-edge-on", "no")),
    Question("how-rounded", ("round", "in-between", "cigar-shaped"), ("smooth-or-featured", "smooth")),
    Question("edge-on-bulge", ("boxy", "none", "rounded"), ("disk-edge-on", "yes")),
    Question("spiral-winding", ("tight", "medium", "loose"), ("has-spiral-arms", "yes")),
    Question("spiral-arm-count", ("1", "2", "3", "4", "more-than-4", "cant-tell"), ("has-spiral-arms", "yes")),
    Question("merging", ("none", "minor-disturbance", "major-disturbance", "merger"), None),
)

DECALS_QUESTIONS = {q.name: q for q in DECALS_DR5}


def decals_answer_columns(suffix: str = "") -> list[str]:
    """All 34 answer columns in tree order, e.g. ``smooth-or-featured_smooth_fraction``."""
    return [c for q in DECALS_DR5 for c in q.answer_columns(suffix)]


def question_slices(questions: tuple[Question, ...] = DECALS_DR5) -> list[tuple[str, slice]]:
    """(question, slice into the concatenated answer vector) for each question."""
    out, start = [], 0
    for q in questions:
        out.append((q.name, slice(start, start + len(q.answers))))
        start += len(q.answers)
    return out


# GZ2 as released for the Kaggle Galaxy Challenge: 11 classes, 37 answers. Fractions are
# weighted down the tree, so the answers of a question sum to the weight of its parent.
@dataclass(frozen=True)
class GZ2Class:
    number: int
    answers: tuple[str, ...]
    # answers whose weights sum to this class's total weight, as Class{q}.{a} names;
    # empty = the root (total weight 1)
    parents: tuple[str, ...]

    def columns(self) -> list[str]:
        return [f"Class{self.number}.{i + 1}" for i in range(len(self.answers))]


GZ2_TREE = (
    GZ2Class(1, ("smooth", "features-or-disk", "star-or-artifact"), ()),
    GZ2Class(2, ("edge-on-yes", "edge-on-no"), ("Class1.2",)),
    GZ2Class(3, ("bar-yes", "bar-no"), ("Class2.2",)),
    GZ2Class(4, ("spiral-yes", "spiral-no"), ("Class2.2",)),
    GZ2Class(5, ("bulge-none", "bulge-just-noticeable", "bulge-obvious", "bulge-dominant"), ("Class2.2",)),
    GZ2Class(6, ("odd-yes", "odd-no"), ("Class1.1", "Class1.2")),
    GZ2Class(7, ("completely-round", "in-between", "cigar-shaped"), ("Class1.1",)),
    GZ2Class(
        8,
        ("ring", "lens-or-arc", "disturbed", "irregular", "other", "merger", "dust-lane"),
        ("Class6.1",),
    ),
    GZ2Class(9, ("bulge-rounded", "bulge-boxy", "bulge-none"), ("Class2.1",)),
    GZ2Class(10, ("arms-tight", "arms-medium", "arms-loose"), ("Class4.1",)),
    GZ2Class(11, ("arms-1", "arms-2", "arms-3", "arms-4", "arms-more-than-4", "arms-cant-tell"), ("Class4.1",)),
)


def gz2_columns() -> list[str]:
    """The 37 Kaggle solution columns, ``Class1.1`` .. ``Class11.6``."""
    return [c for cls in GZ2_TREE for c in cls.columns()]

# predicted vote fractions that select featured, face-on discs (anomaly filter, ring candidates)
FEATURED_FRACTION = "smooth-or-featured_featured-or-disk_fraction"
SMOOTH_FRACTION = "smooth-or-featured_smooth_fraction"
NOT_EDGE_ON_FRACTION = "disk-edge-on_no_fraction"
