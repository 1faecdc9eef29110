"""Concepts as contrastive pairs: the pair types, one reader per data source, and the split of concepts and rows into
training, validation and evaluation.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "Concept": "lcross.concepts.pairs",
    "ContrastivePair": "lcross.concepts.pairs",
    "TextPair": "lcross.concepts.pairs",
    "load_concept": "lcross.concepts.loading",
    "Split": "lcross.concepts.splits",
    "make_split": "lcross.concepts.splits",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
