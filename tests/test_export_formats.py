"""`adaptlab export`: merged folder, peft adapter with a resolvable base, GGUF read back by transformers."""

import json

import torch
from peft import LoraConfig, get_peft_model
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.artifact import save_artifact
from adaptlab.methods.export import GGUF_TOLERANCE, export, hub_origin
from adaptlab.methods.export_gguf import load_gguf, save_gguf
from adaptlab.methods.fidelity import SAMPLE_PROMPTS, logit_drift, prompt_logits
from adaptlab.models import tiny_llama


def _run(tmp_path, tiny_dir, targets=("q_proj", "v_proj")):
    """A trained-looking LoRA run on the tiny base (random non-zero updates); peft builds it directly so
    the embedding can be a target too."""
    model, tok = tiny_llama()
    cfg = MethodConfig(r=4, target_modules=list(targets))
    model = get_peft_model(model.float(), LoraConfig(r=4, target_modules=list(targets), task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    return save_artifact(model.eval(), tok, get_method("lora"), cfg, str(tiny_dir), tmp_path / "run" / "final"), model


def test_q8_0_gguf_reads_back_with_close_logits_and_the_same_tokenizer(tiny, tmp_path):
    model, tok = tiny
    model = model.float()
    path = save_gguf(model, tok, tmp_path / "m.gguf", "q8_0")
    reread, reread_tok = load_gguf(path)
    drift = logit_drift(prompt_logits(model, tok, SAMPLE_PROMPTS), prompt_logits(reread, tok, SAMPLE_PROMPTS))
    assert 0 < drift.max_abs < GGUF_TOLERANCE["q8_0"] and drift.mean_abs < 0.01   # quantized, and close
    text = "Hi there <|im_end|> ünïcödé"
    assert reread_tok.encode(text) == tok.encode(text) and reread_tok.chat_template == tok.chat_template


def test_gguf_of_an_adapter_on_the_tied_embedding_keeps_its_update(tiny_dir, tmp_path):
    run, trained = _run(tmp_path, tiny_dir, targets=("embed_tokens", "q_proj"))
    report = export(run.parent, "gguf", tmp_path / "out", "f16")   # reads the file back, compares with `trained`
    assert report.out.endswith("model-f16.gguf")
    assert report.drift.max_abs < GGUF_TOLERANCE["f16"]
    base = tiny_llama()[0].float()
    with torch.no_grad():   # the trained model (the export's reference) is far from the bare base
        ids = torch.tensor([[1, 500, 900, 30]])
        assert (trained(input_ids=ids).logits - base(input_ids=ids).logits).abs().max() > 10 * report.drift.max_abs


def test_peft_export_names_a_resolvable_base(tiny_dir, tmp_path):
    run, _ = _run(tmp_path, tiny_dir)
    report = export(run, "peft", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_dir.name and "local folder" in report.notes[0]
    assert "--lora-modules adapter=" in (tmp_path / "adapter" / "README.md").read_text()
    assert hub_origin("smollm2-135m")[0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "4-bit GGUF" in hub_origin("smollm2-135m")[1][0]


def test_cli_exports_merged_and_refuses_bad_targets(tiny_dir, tmp_path):
    run, trained = _run(tmp_path, tiny_dir)
    result = CliRunner().invoke(app, ["export", str(run.parent), "--to", "merged", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32)
    ids = torch.tensor([[1, 500, 900, 30]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, trained(input_ids=ids).logits, atol=0.05)
    bad = CliRunner().invoke(app, ["export", str(run), "--to", "onnx", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "choose one of: gguf, merged, peft" in bad.output
    again = CliRunner().invoke(app, ["export", str(run), "--to", "merged", "--out", str(tmp_path / "m")])
    assert again.exit_code == 2 and "not empty" in again.output
