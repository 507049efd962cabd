"""The RLHF-vs-RLAIF report: a markdown table beside the RLAIF paper's Figure 3 and a PNG bar chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adaptlab.compare.plots import _png

# Lee et al. 2023 (arXiv:2309.00267), Figure 3: win rate over SFT (summarization, helpful dialogue) and the
# harmless rate on harmless dialogue, percent; the paper has no DPO arm
PAPER = {"sft": {"harmless": 64.0},
         "rlhf": {"win_summarization": 73.0, "win_helpful": 64.0, "harmless": 76.0},
         "rlaif": {"win_summarization": 71.0, "win_helpful": 63.0, "harmless": 88.0}}
LABELS = {"sft": "SFT", "rlhf": "RLHF", "dpo": "DPO", "rlaif": "RLAIF"}


def _pct(r: dict | None) -> str:
    return "- (reference)" if r is None else f"{r['value']:.1f}% [{r['low']:.1f}, {r['high']:.1f}]"


def _paper(name: str, key: str) -> str:
    v = PAPER.get(name, {}).get(key)
    return "-" if v is None else f"{v:.0f}%"


def markdown(results: dict) -> str:
    """report.md: what ran, the table beside the paper's numbers, the AI judge's agreement with the humans."""
    ev, j = results["eval"], results["ai_judge"]
    lines = [f"# RLHF vs RLAIF vs DPO ({results['model']}, {results['pairs']}, criteria {results['criteria']})", "",
             (f"Held-out judge: {results['heldout_judge']}. Win rate: the share of {results['eval_prompts']} held-out "
             "prompts where the policy's answer beats the SFT policy's (tie = 1/2), 95% interval. Harmless rate: the "
             "share of answers the held-out reward model scores above the threshold that best separates chosen from "
             f"rejected answers on {ev['calibration_pairs']} held-out calibration pairs (t = {ev['threshold']:.3f}, "
             f"separating {ev['calibration_accuracy']:.1f}% of their answers)."), "",
             ("| policy | win rate over SFT (ours) | harmless rate (ours) | mean held-out reward | paper: win rate, "
             "summarization | paper: win rate, helpful dialogue | paper: harmless rate |"),
             "|---|---|---|---|---|---|---|"]
    for name, row in ev["policies"].items():
        lines.append(f"| {LABELS.get(name, name)} | {_pct(row['win_rate'])} | {_pct(row['harmless_rate'])} | "
                     f"{row['mean_reward']:.3f} | {_paper(name, 'win_summarization')} | {_paper(name, 'win_helpful')} | "
                     f"{_paper(name, 'harmless')} |")
    agree = "-" if j["agreement_with_ties"] is None else f"{100 * j['agreement_with_ties']:.1f}%"
    kappa = "-" if j["kappa"] is None else f"{j['kappa']:.3f}"
    lo, hi = ev["heldout_pair_interval"]
    rm = ", ".join(f"{name} {'-' if acc is None else f'{acc:.1f}%'}" for name, acc in results["reward_accuracy"].items())
    phases = ", ".join(f"{name} {s['wall']:.0f} / {s['cpu']:.0f}" for name, s in results["seconds"].items())
    lines += ["", (f"AI labeller: {results['ai_judge_spec']}; it decided {j['decided']} of {j['pairs']} train pairs "
              f"(dropping {j['ties']} tied), agreeing with the human label on {agree} of them (a tie counting as "
              f"disagreement), Cohen's kappa {kappa}, position flips {100 * j['flip_rate']:.1f}%."),
              (f"Held-out reward model: prefers the human-chosen answer on {ev['heldout_pair_accuracy']:.1f}% "
              f"[{lo:.1f}, {hi:.1f}] of the calibration pairs; the policies' reward models on the same pairs (those "
              f"that fit seq_len): {rm}."),
              f"Training steps per stage: {', '.join(f'{k} {v}' for k, v in results['steps'].items())}.",
              f"Seconds per phase, wall / CPU (all threads): {phases}.",
              "", "![win and harmless rates](rlhf_vs_rlaif.png)", ""]
    return "\n".join(lines)


def chart(results: dict) -> bytes:
    """Two panels of bars with 95% intervals, ours beside the paper's (hollow) where it has a number."""
    rows = results["eval"]["policies"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, paper_key, title in ((axes[0], "win_rate", "win_helpful", "win rate over SFT (%)"),
                                      (axes[1], "harmless_rate", "harmless", "harmless rate (%)")):
        names = [n for n in rows if rows[n][key] is not None]
        xs = range(len(names))
        vals = [rows[n][key]["value"] for n in names]
        err = [[v - rows[n][key]["low"] for n, v in zip(names, vals)], [rows[n][key]["high"] - v for n, v in zip(names, vals)]]
        ax.bar([x - 0.2 for x in xs], vals, width=0.4, yerr=err, capsize=3, label="this run")
        paper = [PAPER.get(n, {}).get(paper_key) for n in names]
        ax.bar([x + 0.2 for x, p in zip(xs, paper) if p is not None], [p for p in paper if p is not None], width=0.4,
               fill=False, edgecolor="grey", hatch="//", label="paper (helpful dialogue)" if key == "win_rate" else "paper")
        if key == "win_rate":
            ax.axhline(50, linestyle="--", linewidth=1, color="grey")
        ax.set_xticks(list(xs), [LABELS.get(n, n) for n in names])
        ax.set(ylim=(0, 100), title=title)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)
