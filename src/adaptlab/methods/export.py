"""Export a trained run for the servers people already run: a merged transformers folder (any server),
the peft adapter (vLLM `--lora-modules`, TGI `LORA_ADAPTERS`) or a GGUF file (llama.cpp, Ollama).

Each target is one function behind a registry (`EXPORTERS`); every target that changes weights reports
the logit drift against the trained model on sample prompts (`fidelity`), so a lossy export is visible.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from adaptlab.methods.artifact import load_artifact, read_artifact_meta, resolve_artifact
from adaptlab.methods.base import base_model_of
from adaptlab.methods.fidelity import (
    DEFAULT_THRESHOLD,
    SAMPLE_PROMPTS,
    Drift,
    DriftTooLarge,
    check_drift,
    logit_drift,
    merge_artifact,
    prompt_logits,
)
from adaptlab.registry import lookup

# largest max |logit drift| accepted when a GGUF file is read back (trained fp32 model vs dequantized file);
# q8_0 on SmolLM2-135M with a LoRA measured max 0.86-0.98, mean 0.13-0.14 over 37 prompt positions (f16: 0.014)
GGUF_TOLERANCE = {"f16": 0.05, "q8_0": 1.5}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class ExportReport:
    target: str
    out: str
    drift: Drift | None = None
    notes: list[str] = field(default_factory=list)


def _fresh(out: Path) -> None:
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")


def hub_origin(base_model: str) -> tuple[str, list[str]]:
    """A `base_model_name_or_path` another machine resolves, and what the user should know about it."""
    from adaptlab.models import BUILTIN_MODELS

    if base_model in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[base_model]
        return spec.hub_id, [(f"base {base_model!r} is {spec.hub_id} on the hub; adaptlab's builtin copy was "
                              f"dequantized from a 4-bit GGUF ({spec.filename}), so the adapter was trained against "
                              "weights that differ slightly from the hub's bf16 ones")]
    if Path(base_model).exists():
        return Path(base_model).name, [(f"base {base_model!r} is a local folder: copy it to the serving machine "
                                        "and set base_model_name_or_path in adapter_config.json to its path there")]
    return base_model, []


def export_peft(run: Path, out: Path, quant: str | None) -> ExportReport:
    """Copy the peft adapter, with `base_model_name_or_path` set to what another machine can resolve."""
    if not (run / ADAPTER_FILES[0]).exists():
        raise ValueError(f"{run} holds no peft adapter (a {read_artifact_meta(run)['method']} run); "
                         "export it --to merged or --to gguf")
    base, notes = hub_origin(read_artifact_meta(run)["base_model"])
    _fresh(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run, tmp)
    config = json.loads((tmp / ADAPTER_FILES[0]).read_text())
    config["base_model_name_or_path"] = base
    (tmp / ADAPTER_FILES[0]).write_text(json.dumps(config, indent=2))
    notes.append(f"vLLM: vllm serve {base} --enable-lora --lora-modules {out.name}={out}")
    (tmp / "README.md").write_text("# adapter exported by adaptlab\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return ExportReport("peft", str(out), notes=notes)


def export_merged(run: Path, out: Path, quant: str | None) -> ExportReport:
    """Fold the adapter in and save a transformers safetensors folder (refused when the logits drift)."""
    report = merge_artifact(run, out, DEFAULT_THRESHOLD)
    return ExportReport("merged", report.out, report.drift, [f"low-bit export: {report.low_bit}"])


def export_gguf(run: Path, out: Path, quant: str | None) -> ExportReport:
    """Merge in fp32, write GGUF (`quant` f16 | q8_0), read it back with transformers and compare logits."""
    from adaptlab.methods.export_gguf import save_gguf
    from adaptlab.quant.layers import QuantEmbedding, QuantLinear

    quant = quant or "f16"
    out = out if out.suffix == ".gguf" else out / f"model-{quant}.gguf"
    _fresh(out)
    art = load_artifact(run, dtype="fp32", device="cpu")
    untie_if_adapted(art.model)
    trained = prompt_logits(art.model, art.tokenizer, SAMPLE_PROMPTS)
    merged = art.method.merge(art.model).eval()
    if any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in merged.modules()):
        raise ValueError(f"{run} merges into adaptlab's own low-bit layers ({art.method.name}); GGUF export needs "
                         "float weights: export --to merged instead")
    pre = "smollm" if art.base_model == "smollm2-135m" else "default"
    save_gguf(merged, art.tokenizer, out, quant, name=f"{art.base_model}-{art.method.name}", tokenizer_pre=pre)
    return ExportReport("gguf", str(out), check_gguf(trained, art.tokenizer, out, quant))


def check_gguf(trained: list, tokenizer, path: Path, quant: str) -> Drift:
    """Read the GGUF back with transformers and compare its logits with the trained (unmerged) model's."""
    from adaptlab.methods.export_gguf import load_gguf

    reread, _ = load_gguf(path)
    drift = logit_drift(trained, prompt_logits(reread, tokenizer, SAMPLE_PROMPTS))
    try:
        check_drift(drift, GGUF_TOLERANCE[quant])
    except DriftTooLarge as e:
        path.unlink()
        message = (f"the {quant} GGUF file's logits differ from the trained model's by up to {drift.max_abs:.4g} "
                   f"(mean {drift.mean_abs:.4g}), above {GGUF_TOLERANCE[quant]:g}: not written; try --quant f16")
        e.args = (message,)
        raise
    return drift


def untie_if_adapted(model) -> None:
    """An adapter on the embedding or lm_head of a tied model: give lm_head its own copy before merging,
    so the merge changes only the layer that was trained and both are exported whole."""
    base = base_model_of(model)
    touched = {n.rsplit(".", 1)[-1] for n, m in base.named_modules() if hasattr(m, "base_layer") or
               hasattr(m, "modules_to_save")}
    if base.config.tie_word_embeddings and touched & {"embed_tokens", "lm_head"}:
        head = base.get_output_embeddings()
        head = getattr(head, "base_layer", head)
        head.weight = nn.Parameter(base.get_input_embeddings().weight.detach().clone(), requires_grad=False)
        base.config.tie_word_embeddings = False


EXPORTERS: dict[str, Callable[[Path, Path, str | None], ExportReport]] = {
    "merged": export_merged, "peft": export_peft, "gguf": export_gguf}


def export(run: str | Path, to: str, out: str | Path, quant: str | None = None) -> ExportReport:
    """Export a run (run folder or its final artifact) to `out` in the format `to`."""
    exporter = lookup(EXPORTERS, to, "export target")
    if quant is not None and to != "gguf":
        raise ValueError(f"--quant applies to --to gguf only (got --to {to})")
    return exporter(resolve_artifact(run), Path(out), quant)
