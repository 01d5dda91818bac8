"""What `uae train ...` and `uae demo` print when a run ends: text (one or more lines) from the summary dicts
the stages and the demo return. Pure functions, so cli.py only prints, as it prints a benchmark's summary."""
from __future__ import annotations

from pathlib import Path


def pretrain_summary(summary: dict) -> str:
    """One line per phase (decoder, encoder): loss first -> last, and the encoder's token accuracy."""
    lines = []
    for phase, s in summary.items():
        extra = (f", token accuracy {s['first_token_accuracy']:.3f} -> {s['last_token_accuracy']:.3f}"
                 if "first_token_accuracy" in s else "")
        lines.append(f"{phase}: loss {s['first_loss']:.4f} -> {s['last_loss']:.4f} over {s['steps']} steps{extra}")
    return "\n".join(lines)


def rl_summary(stage: str, summary: dict, out: Path) -> str:
    """Each held-out metric first -> last eval, then the step count and where the results are."""
    first, last = summary["first_eval"], summary["last_eval"]
    lines = [f"{k}: {first[k]:.4f} -> {last[k]:.4f}" for k in last if k != "step" and k in first]
    return "\n".join(lines + [f"{stage}: {summary['steps']} steps; results in {Path(out) / 'results'}"])


def yfork_summary(s: dict, out: Path) -> str:
    return (f"{s['name']}: und loss {s['first_und_loss']:.3f} -> {s['last_und_loss']:.3f}, gen loss "
            f"{s['first_gen_loss']:.3f} -> {s['last_gen_loss']:.3f} over {s['steps']} steps -> {out}/model")


def demo_summary(result: dict) -> str:
    """A row per headline metric (before -> after, gain with its CI, controls), wall minutes, the report path."""
    lines = []
    for r in result["rows"]:
        gain = r["gain"]
        ci = f" [95% CI {gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain.get("ci95") else ""
        ctrl = "; ".join(f"{c['name']} " + (f"{c['gain']['mean']:+.3f}" if "gain" in c else f"{c['value']:.3f}")
                         for c in r["controls"])
        lines.append(f"{r['stage']:<8} {r['metric'][:44]:<44} {r['before']['mean']:.3f} -> {r['after']['mean']:.3f} "
                     f"(gain {gain['mean']:+.3f}{ci})" + (f"  controls: {ctrl}" if ctrl else ""))
    minutes = result.get("wall_minutes", {})
    if minutes:
        lines.append("wall minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
                     + f" (total {sum(minutes.values()):.1f})")
    return "\n".join(lines + [f"report: {result['report']}"])
