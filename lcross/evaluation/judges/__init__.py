"""Judges: score generated (open-ended) answers, one number per (prompt, answer), for steering evaluations.

Every judge is called as ``judge(prompts, completions)`` and returns a float64 tensor ``[n]`` on the CPU whose values
lie in ``judge.scale``. A judge that cannot score an item returns NaN for it and counts it, so NaN is never silently
read as 0: ``LLMJudge`` for a reply that holds no readable score (``last_unreadable``, raw text in ``last_replies``),
``LexiconJudge`` with ``against`` for an answer that contains words of neither list (``last_undefined``). The other
judges never return NaN. Average with ``torch.nanmean`` and report the count next to the mean.

One module per judge:

- ``refusal.RefusalJudge``: 1 when the answer contains none of the AdvBench refusal phrases (Zou et al. 2023), else 0.
- ``sentiment.SentimentJudge``: VADER's compound score mapped to [0, 1].
- ``lexicon.LexiconJudge``: share (or presence) of whole words from a word list, e.g. ``FEMALE_TERMS`` vs
  ``MALE_TERMS``.
- ``llm.LLMJudge``: a chat model grades each answer 0-10 with a CAA-style rubric (``RUBRIC``); ``parse_score`` reads
  it.
- ``classifier.ClassifierJudge``: a sequence classifier's probability of a positive label, or the HarmBench yes/no
  classifier.
- ``fluency.FluencyJudge``: offline fluency in [0, 1] from a reference model's NLL of the answer and its repeated
  n-grams (the generation engine scores every answer with it).
- ``relevance.InstructionRelevanceJudge``: a chat model grades 0-2 whether the answer still addresses its prompt
  (AxBench's instruction relevance; the engine uses the model of a configured ``llm`` judge).

``base.Judge`` is the class to subclass for a judge of your own; ``registry.make_judge(name, **kwargs)`` builds any
judge from a config by short name, by a name given to ``register_judge``, or by class path (``my_pkg.MyJudge``);
``per_concept.ConceptJudges`` holds a config's judge for each concept.
"""

from lcross.exports import lazy_exports

_EXPORTS = {
    "Judge": "lcross.evaluation.judges.base",
    "parse_score": "lcross.evaluation.judges.parsing",
    "RefusalJudge": "lcross.evaluation.judges.refusal",
    "REFUSAL_PREFIXES": "lcross.evaluation.judges.refusal",
    "SentimentJudge": "lcross.evaluation.judges.sentiment",
    "LexiconJudge": "lcross.evaluation.judges.lexicon",
    "LEXICONS": "lcross.evaluation.judges.lexicon",
    "FEMALE_TERMS": "lcross.evaluation.judges.lexicon",
    "MALE_TERMS": "lcross.evaluation.judges.lexicon",
    "FEAR_TERMS": "lcross.evaluation.judges.lexicon",
    "LLMJudge": "lcross.evaluation.judges.llm",
    "RUBRIC": "lcross.evaluation.judges.llm",
    "SYSTEM_PROMPT": "lcross.evaluation.judges.llm",
    "ClassifierJudge": "lcross.evaluation.judges.classifier",
    "HARMBENCH_PROMPT": "lcross.evaluation.judges.classifier",
    "JUDGES": "lcross.evaluation.judges.registry",
    "judge_class": "lcross.evaluation.judges.registry",
    "make_judge": "lcross.evaluation.judges.registry",
    "register_judge": "lcross.evaluation.judges.registry",
    "ConceptJudges": "lcross.evaluation.judges.per_concept",
    "FluencyJudge": "lcross.evaluation.judges.fluency",
    "InstructionRelevanceJudge": "lcross.evaluation.judges.relevance",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
