"""Preference objectives on the tiny model: parity with trl 1.16 (DPO, IPO and reward losses on the same
batch), the preference layouts and their errors, training that separates the pairs, the cached reference
log-probs, and a trained reward model loaded back as a reward function."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from adaptlab.config import load_config
from adaptlab.data import Preference, load_records
from adaptlab.data.records import RecordError
from adaptlab.train import train
from adaptlab.train.losses import bradley_terry_loss, dpo_loss, sequence_sums, token_logprobs
from adaptlab.train.objectives.pairs import collate_pairs, response_example, sequence_logprobs
from adaptlab.train.rewards import load_reward, register_reward_kind
from tests.conftest import write_jsonl

PAIRS = [{"prompt": f"Name a number near {i}.", "chosen": f"{i + 1} is near {i}.", "rejected": f"No idea, {i * 7}."}
         for i in range(24)]


def trl_batch(trainer, rows):
    """A batch as trl's DPOTrainer builds it: its own tokenization and collator."""
    data = trainer._prepare_dataset(Dataset.from_list(rows), trainer.processing_class, trainer.args, "test")
    return trainer.data_collator([data[i] for i in range(len(rows))])


def ours_from_trl(model, inputs):
    """Our sequence log-probs on exactly trl's sequences (chosen rows first, then rejected rows)."""
    examples = []
    for ids, mask, att in zip(inputs["input_ids"].tolist(), inputs["completion_mask"].tolist(),
                              inputs["attention_mask"].tolist()):
        n, start = sum(att), mask.index(1)
        examples.append(response_example(ids[:start], ids[start:n], 512))
    half = len(examples) // 2
    interleaved = [e for pair in zip(examples[:half], examples[half:]) for e in pair]
    batch = collate_pairs(interleaved, 512, 0)
    return sequence_logprobs(model, batch), batch.lengths.float()


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_equals_trl_on_the_same_batch(tiny, tmp_path, loss_type):
    from trl import DPOConfig, DPOTrainer

    model, tok = copy.deepcopy(tiny[0]), tiny[1]   # trl's trainers switch on gradient checkpointing in the model
    args = DPOConfig(output_dir=str(tmp_path), beta=0.3, loss_type=[loss_type], precompute_ref_log_probs=True,
                     report_to=[], use_cpu=True, max_length=512)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, processing_class=tok,
                         train_dataset=Dataset.from_list(PAIRS[:4]))
    inputs = trl_batch(trainer, PAIRS[:4])
    torch.manual_seed(0)
    inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = -40 - 5 * torch.rand(4), -40 - 5 * torch.rand(4)
    trainer.precompute_ref_logps = True
    expected = trainer._compute_loss(trainer.model, inputs, return_outputs=False)
    logps, lengths = ours_from_trl(trainer.model, inputs)
    loss, _, _ = dpo_loss(logps[0::2], logps[1::2], inputs["ref_chosen_logps"], inputs["ref_rejected_logps"], 0.3,
                          loss_type, lengths[0::2], lengths[1::2])
    torch.testing.assert_close(loss.mean(), expected, atol=1e-5, rtol=1e-5)


def test_reward_loss_equals_trl_reward_trainer(tiny, tmp_path):
    from transformers import LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    model, tok = tiny
    config = model.config.__class__.from_dict({**model.config.to_dict(), "num_labels": 1})
    scorer = LlamaForSequenceClassification(config)
    trainer = RewardTrainer(model=scorer, args=RewardConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True),
                            processing_class=tok, train_dataset=Dataset.from_list(PAIRS[:4]))
    r = torch.randn(8)
    stub = lambda **kw: SimpleNamespace(logits=r[:, None])
    expected = trainer.compute_loss(stub, {"input_ids": torch.ones(8, 3, dtype=torch.long),
                                           "attention_mask": torch.ones(8, 3, dtype=torch.long)})
    torch.testing.assert_close(bradley_terry_loss(r[:4], r[4:]).mean(), expected, atol=1e-6, rtol=1e-6)


def test_token_logprobs_gradients_match_log_softmax():
    torch.manual_seed(0)
    h = torch.randn(23, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(31, 8, dtype=torch.float64, requires_grad=True)
    y, seg = torch.randint(0, 31, (23,)), torch.randint(0, 4, (23,))
    ours = sequence_sums(token_logprobs(h, w, y, chunk=5), seg, 4)
    ref = torch.zeros(4, dtype=torch.float64).index_add(0, seg, torch.log_softmax(h @ w.t(), -1).gather(1, y[:, None])[:, 0])
    torch.testing.assert_close(ours, ref)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((ours * weights).sum(), (h, w)),
                               torch.autograd.grad((ref * weights).sum(), (h, w)))


def test_preference_layouts_and_errors(tmp_path):
    conv = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "go away"}]}
    implicit = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]}
    anthropic = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    want = Preference([{"role": "user", "content": "hi"}], "hello", "go away")
    assert load_records(str(write_jsonl(tmp_path / "a.jsonl", [conv, implicit, anthropic]))) == [want] * 3
    for row, field in [({"prompt": "p", "chosen": "c"}, "'rejected'"), ({"prompt": "p", "chosen": "c", "rejected": " c"}, "identical")]:
        path = write_jsonl(tmp_path / "bad.jsonl", [PAIRS[0], row])
        with pytest.raises(RecordError, match=rf"bad.jsonl:2: .*{field}"):
            load_records(str(path))


def make_recipe(tmp_path: Path, tiny_dir: Path, objective: str, **extra) -> Path:
    rows = PAIRS + [{"prompt": "long " * 200, "chosen": "a", "rejected": "b"}]
    recipe = {"model": str(tiny_dir), "objective": objective, "method": {"name": "lora", "r": 4, "alpha": 8},
              "data": {"train": str(write_jsonl(tmp_path / "pairs.jsonl", rows)), "eval_fraction": 0.25, "eval_max": 6},
              "optim": {"lr": 3e-3, "warmup_steps": 0}, "seq_len": 96, "batch_size": 3, "max_steps": 8,
              "eval_every": 4, "dtype": "fp32", "output_dir": str(tmp_path / objective), **extra}
    path = tmp_path / f"{objective}.yaml"
    path.write_text(json.dumps(recipe))
    return path


def logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_dpo_trains_and_reuses_its_cached_reference(tmp_path, tiny_dir, caplog):
    cfg = load_config(make_recipe(tmp_path, tiny_dir, "dpo"))
    with caplog.at_level("INFO"):
        result = train(cfg)
    assert re.search(r"1 of \d+ preference pairs skipped: the prompt alone fills seq_len=96", caplog.text)
    rows = logged(result.output_dir)
    evals = [r for r in rows if "eval_margin" in r]
    assert evals[-1]["eval_margin"] > evals[0]["eval_margin"] > 0 and rows[-1]["accuracy"] > 0.5
    cache = list((result.output_dir / "reference").glob("*.safetensors"))
    assert len(cache) == 1
    caplog.clear()
    with caplog.at_level("INFO"):
        train(load_config(make_recipe(tmp_path, tiny_dir, "dpo", max_steps=9)), resume=True)
    assert "reference log-probs read from" in caplog.text


def test_reward_model_trains_and_scores_as_a_reward_function(tmp_path, tiny_dir):
    result = train(load_config(make_recipe(tmp_path, tiny_dir, "reward", max_steps=12)))
    evals = [r for r in logged(result.output_dir) if "eval_accuracy" in r]
    assert evals[-1]["eval_accuracy"] > 0.5 and evals[-1]["eval_margin"] > 0
    score = load_reward(str(result.final_dir))
    pair = PAIRS[1]
    good, bad = score([pair["prompt"]] * 2, [pair["chosen"], pair["rejected"]])
    assert good > bad
    register_reward_kind("const", lambda value: lambda prompts, completions: [float(value)] * len(prompts))
    assert load_reward("const:2.5")(["p"], ["c"]) == [2.5]
    assert load_reward("tests.conftest:write_jsonl") is write_jsonl
    with pytest.raises(ValueError, match="no reward given"):
        load_reward("")


def test_pairs_without_a_chat_template_are_plain_text_plus_eos(tiny):
    import copy

    from adaptlab.train.objectives.pairs import pair_examples

    tok = copy.deepcopy(tiny[1])
    tok.chat_template = None
    chosen, rejected = pair_examples([Preference("Q: 2+2? A:", " 4", " 5")], tok, 64)
    prompt = tok.encode("Q: 2+2? A:")
    assert chosen.input_ids[-1] == rejected.input_ids[-1] == tok.eos_token_id
    assert chosen.labels[: len(prompt) - 1] == [-100] * (len(prompt) - 1) and chosen.n_targets >= 2
