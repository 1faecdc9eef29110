"""On the real offline demo pair (SmolLM2-135M-Instruct -> Gemma-3-270M): the fluency axis and operating points.

Slow (the demo fixture's extraction, then 8 prompts x 13 steerings x 24 tokens on Gemma); skipped when the model
packages are not installed. Also checks the fluency calibration on SmolLM2's own greedy answers.
"""

import pytest
import torch

from lcross import LinearTransform
from lcross.evaluation.generation_efficacy import GenerationSettings, evaluate_generation_efficacy
from lcross.evaluation.judges import make_judge
from lcross.evaluation.judges.fluency import FluencyJudge
from lcross.steering.generation import generate

from .test_real_models import demo  # noqa: F401  (the module's fixture: the demo pair, sentiment held out)

pytestmark = pytest.mark.slow


def test_a_models_own_greedy_answers_score_about_1_and_random_tokens_0(demo):  # noqa: F811
    model, tokenizer = demo.model("source")  # SmolLM2-135M-Instruct, asked with its chat template
    prompts = ["Tell me about your weekend.", "Describe a walk in the park.", "What do you think of rainy days?"]
    answers = generate(model, tokenizer, prompts, max_new_tokens=32, chat_template=True)
    judge = FluencyJudge(model, tokenizer, chat_template=True)
    # measured on the dev VM: 1.0, 1.0, 1.0 (NLL 0.8-1.0 nats)
    assert judge(prompts, answers).mean() > 0.9
    generator = torch.Generator().manual_seed(0)
    vocabulary = model.get_output_embeddings().weight.shape[0]
    noise = [tokenizer.decode(torch.randint(0, vocabulary, (30,), generator=generator)) for _ in prompts]
    assert (judge(prompts, noise) < 0.2).all()
    assert (judge(prompts, [" really" * 12] * 3) < 0.2).all()
    demo.store.release("source")


def test_at_matched_fluency_the_transferred_vector_steers_and_the_random_t_breaks_the_text(demo):  # noqa: F811
    xs, xt = (t[:, 0] for t in demo.tensors("train"))  # the one layer pair
    transform = LinearTransform.fit(xs, xt, method="ridge", alpha=1000.0)
    settings = GenerationSettings(
        betas=[-1.5, -1.0, 1.0, 1.5], concepts=["sentiment"], max_prompts=8, max_new_tokens=24, bootstrap=0,
        operating_point="matched_fluency",
    )  # fmt: skip
    result = evaluate_generation_efficacy(demo, transform, settings, make_judge("vader"))["sentiment"]
    points = result.extra["operating_points"]
    transferred, random_t = points["transferred"], points["random_T"]
    test = transferred["test"]
    # measured on the dev VM (4 validation, 4 test prompts): transferred chosen at -1.5, VADER 0.340 against 0.462
    # unsteered, fluency 0.693 against 0.814 unsteered (0.85x: below the 0.9x that held on the validation prompts);
    # the random T qualified at no beta (fluency 0.11-0.58 over the grid), its most fluent beta +1.5 gives 0.529.
    direction = 1.0 if transferred["beta"] > 0 else -1.0
    assert direction * (test["score"]["mean"] - test["score"]["unsteered"]) > 0.05, test
    assert test["fluency"]["mean"] >= 0.8 * test["fluency"]["unsteered"], test
    assert random_t["test"]["fluency"]["mean"] < test["fluency"]["mean"] - 0.1, (random_t, transferred)
    curve = result.extra["tradeoff"]["random_T"]
    assert min(curve["fluency"]) < 0.3  # somewhere on the grid the random T breaks the text
