"""Plain text to fit T on: passages from a file, folder or dataset, token alignment between two tokenizers, paired
token states extracted in cached shards, rows streamed for gradient descent, fits from their statistics, and the
settings of a corpus fit (``data.corpus``).
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "CorpusSource": "lcross.corpus.passages",
    "CorpusSettings": "lcross.corpus.settings",
    "iter_passages": "lcross.corpus.passages",
    "align": "lcross.corpus.alignment",
    "Alignment": "lcross.corpus.alignment",
    "CorpusStates": "lcross.corpus.states",
    "CorpusRows": "lcross.corpus.rows",
    "fit_parts": "lcross.corpus.fit",
    "transform_from_parts": "lcross.corpus.fit",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
