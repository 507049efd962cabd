"""`adaptlab methods` and `adaptlab merge` on artifacts built over a tiny model saved to disk."""

import pytest
import torch
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.methods import MethodConfig, get_method
from adaptlab.methods.artifact import save_artifact
from adaptlab.models import tiny_llama
from adaptlab.quant.export import is_quantized_export, load_quantized

runner = CliRunner()


def text(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-base")
    model, tok = tiny_llama()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def artifact(base_dir, tmp_path, name, scale=0.05, **cfg):
    model, tok = tiny_llama()
    cfg = MethodConfig(name=name, r=4, group_size=16, **cfg)
    model = get_method(name).apply(model.float(), cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn_like(p))
    return save_artifact(model, tok, get_method(name), cfg, str(base_dir), tmp_path / f"run-{name}" / "final")


def test_methods_lists_every_method():
    result = runner.invoke(app, ["methods"], terminal_width=200)
    assert result.exit_code == 0
    for name in ["full", "lora", "dora", "ia3", "qlora", "qalora", "loftq"]:
        assert name in result.output
    assert "arXiv:2309.14717" in result.output


def test_merge_lora_saves_transformers_folder(base_dir, tmp_path):
    artifact(base_dir, tmp_path, "lora")
    out = tmp_path / "merged"
    result = runner.invoke(app, ["merge", str(tmp_path / "run-lora"), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "max |drift|" in text(result) and "saved" in text(result)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()


def test_merge_qalora_writes_low_bit_export(base_dir, tmp_path):
    path = artifact(base_dir, tmp_path, "qalora")
    out = tmp_path / "merged"
    result = runner.invoke(app, ["merge", str(path), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "low-bit export" in text(result) and is_quantized_export(out)
    assert load_quantized(out).get_submodule("model.layers.0.mlp.down_proj").qmeta["bits"] == 4


def test_merge_refuses_drift_above_threshold_unless_forced(base_dir, tmp_path):
    path = artifact(base_dir, tmp_path, "lora")
    out = tmp_path / "merged"
    refused = runner.invoke(app, ["merge", str(path), "--out", str(out), "--threshold", "0"], terminal_width=200)
    assert refused.exit_code == 1 and "refused" in text(refused) and "--force" in text(refused)
    assert not out.exists()
    forced = runner.invoke(app, ["merge", str(path), "--out", str(out), "--threshold", "0", "--force"], terminal_width=200)
    assert forced.exit_code == 0 and "saved (forced)" in text(forced)


def test_merge_of_a_folder_without_artifact_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["merge", str(tmp_path), "--out", str(tmp_path / "x")], terminal_width=200)
    assert result.exit_code == 2 and "not an adaptlab artifact" in text(result)


def test_low_bit_export_loads_through_load_model(base_dir, tmp_path):
    """eval and serve load models by path through `load_model`: the QA-LoRA export must load there too."""
    from adaptlab.models import load_model

    path = artifact(base_dir, tmp_path, "qalora")
    out = tmp_path / "merged"
    assert runner.invoke(app, ["merge", str(path), "--out", str(out)], terminal_width=200).exit_code == 0
    loaded = load_model(str(out), device="cpu")
    assert loaded.model.get_submodule("model.layers.0.mlp.down_proj").qmeta["bits"] == 4
    ids = loaded.tokenizer("hello", return_tensors="pt").input_ids
    assert loaded.model(ids).logits.shape[-1] == len(loaded.tokenizer)
