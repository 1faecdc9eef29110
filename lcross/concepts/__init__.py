"""Concepts as contrastive pairs: the pair types, one reader per kind of data source (and the registry that picks
one), and the split of concepts and rows into training, validation and evaluation.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "Concept": "lcross.concepts.pairs",
    "ContrastivePair": "lcross.concepts.pairs",
    "TextPair": "lcross.concepts.pairs",
    "load_concept": "lcross.concepts.loading",
    "ConceptReader": "lcross.concepts.reader",
    "ConceptData": "lcross.concepts.reader",
    "register_reader": "lcross.concepts.registry",
    "unregister_reader": "lcross.concepts.registry",
    "concept_readers": "lcross.concepts.registry",
    "CAAReader": "lcross.concepts.caa_reader",
    "JSONLReader": "lcross.concepts.jsonl_reader",
    "EmotionReader": "lcross.concepts.emotion_reader",
    "TwoListsReader": "lcross.concepts.two_lists_reader",
    "StereoSetReader": "lcross.concepts.stereoset_reader",
    "HFDatasetReader": "lcross.concepts.hf_dataset_reader",
    "Split": "lcross.concepts.splits",
    "make_split": "lcross.concepts.splits",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
