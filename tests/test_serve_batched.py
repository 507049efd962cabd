"""One forward for rows of different adapters equals peft running each row's adapter alone (LoRA, DoRA, IA3)."""

import pytest
import torch
from peft import IA3Config, LoraConfig, get_peft_model

from adaptlab.methods.multi import BASE, AdapterSet
from adaptlab.models import tiny_llama
from adaptlab.serve.batched import RowAdapters


def _save(path, config, seed: int) -> str:
    model = get_peft_model(tiny_llama()[0].float(), config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:   # move every adapter weight off its init so each adapter changes the output
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(path)
    return str(path)


def _adapter_set(dtype, adapters: dict[str, str]) -> AdapterSet:
    out = AdapterSet(tiny_llama()[0].to(dtype))
    for name, path in adapters.items():
        out.load(name, path)
    return out


def _check(adapters: AdapterSet, names: list[str], dtype, atol: float) -> None:
    rows = RowAdapters(adapters.model)
    assert rows.names == adapters.names
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (len(names), 7))
    with torch.inference_mode():
        batched = rows(names, input_ids=ids).logits.float()
        for b, name in enumerate(names):
            with adapters.active(name) as model:
                alone = model(input_ids=ids[b:b + 1]).logits.float()
            torch.testing.assert_close(batched[b:b + 1], alone, atol=atol, rtol=0)
    # every adapter changes the answer (a skipped adapter would pass the check above only with the base)
    assert all(not torch.allclose(batched[0], batched[b], atol=atol) for b in range(1, len(set(names))))


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.bfloat16, 0.1)])
def test_lora_and_dora_rows_in_one_forward_equal_peft_per_adapter(tmp_path, dtype, atol):
    adapters = _adapter_set(dtype, {
        "lo": _save(tmp_path / "lo", LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"), 1),
        "do": _save(tmp_path / "do", LoraConfig(r=2, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  use_dora=True, task_type="CAUSAL_LM"), 2),
        "lo2": _save(tmp_path / "lo2", LoraConfig(r=8, lora_alpha=4, target_modules=["k_proj", "up_proj"],
                                                    task_type="CAUSAL_LM"), 3),
    })
    _check(adapters, [BASE, "lo", "do", "lo2", "do", BASE], dtype, atol)


def test_ia3_rows_attention_and_feed_forward_in_one_forward_equal_peft(tmp_path):
    config = lambda: IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                               feedforward_modules=["down_proj"], task_type="CAUSAL_LM")
    adapters = _adapter_set(torch.float32, {"x": _save(tmp_path / "x", config(), 1),
                                            "y": _save(tmp_path / "y", config(), 2)})
    _check(adapters, [BASE, "x", "y", "x"], torch.float32, 1e-4)


def test_weights_are_shared_and_a_base_only_batch_is_the_base(tmp_path):
    adapters = _adapter_set(torch.float32, {"lo": _save(tmp_path / "lo", LoraConfig(r=4, task_type="CAUSAL_LM",
                                                                                       target_modules="all-linear"), 1)})
    rows = RowAdapters(adapters.model)
    ours = {p.data_ptr() for p in rows.model.parameters()}
    theirs = {p.data_ptr() for p in adapters.model.base_model.model.parameters()}
    assert ours <= theirs
    ids = torch.randint(0, 1000, (2, 5))
    with torch.inference_mode(), adapters.active(BASE) as base:
        assert torch.equal(rows([BASE, BASE], input_ids=ids).logits, base(input_ids=ids).logits)


def test_an_embedding_adapter_is_left_to_peft(tmp_path):
    config = LoraConfig(r=4, target_modules=["q_proj", "embed_tokens"], task_type="CAUSAL_LM")
    adapters = _adapter_set(torch.float32, {"emb": _save(tmp_path / "emb", config, 1)})
    rows = RowAdapters(adapters.model)
    assert not rows.covers("emb") and rows.covers(BASE)
