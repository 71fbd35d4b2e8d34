"""``nowcast evaluate``: score predictions, baselines or checkpoints on the same test sets.

Interface
---------
evaluate_model(model_or_forecaster, source, split="test", protocol=None, *, batch_size=8,
               device=None, max_sequences=0) -> dict
    ``model_or_forecaster``: a PredRNN (``.forecast``), a baseline name ("persistence",
    "extrapolation"), or ``f(context (B, T_in, C, H, W), steps) -> (B, steps, C, H, W)`` in [0, 1];
    an ensemble forecaster returns (B, M, steps, C, H, W) instead.
    ``source``: a sequence source (model/data). ``protocol``: "paper" | "nowcast" | "both";
    None picks "paper" for unitless frames (Moving MNIST, KTH) and "both" for radar.
    Returns strict-JSON-ready results: {"paper": ..., "nowcast": ...} plus what was scored.

nowcast evaluate --truth T.npy --pred P.npy --protocol paper|nowcast --json OUT.json
    arrays (N, T, C, H, W) in [0, 1], scored as they are.
nowcast evaluate --baseline persistence,extrapolation [--checkpoint [NAME=]CKPT ...] --data mnist|synthetic|radar|kth
                 [--option KEY=VALUE ...] --json OUT.json
    runs each method on the source's test split.

Every run writes OUT.json, a Markdown table next to it (OUT.md), a PNG of skill against lead
time (OUT_skill.png: CSI per threshold, MSE per frame) and, for chosen ``--samples``, PNG strips
of context, truth and each prediction (OUT_sample<N>.png). The metrics are model/verification/metrics.py.

Ensembles: the nowcast protocol also scores every method probabilistically
(model/verification/probabilistic.py; CRPS, Brier, reliability, ROC, spread-skill, rank
histogram) into a "probabilistic" section. An ensemble's deterministic scores are those of its
members' mean; a deterministic forecast is scored probabilistically as a one-member ensemble.
With a method named ``steps`` among them, the others get ``crps_skill_vs_steps`` and
``brier_skill_vs_steps``, and OUT_probabilistic.png shows the scores side by side.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.io.units import DEFAULT_SCALING, Scaling, dbz_to_model, model_to_dbz
from model.training.history import format_duration
from model.verification.metrics import PaperScores, SkillScores, json_safe
from model.verification.probabilistic import EnsembleScores, brier_skill_against, crps_skill_against
from model.visualization.skill import plot_skill

log = logging.getLogger(__name__)

Forecaster = Callable[[np.ndarray, int], np.ndarray]
PROTOCOLS = ("paper", "nowcast", "both")
DATA_ALIASES = {"mnist": "moving_mnist", "synthetic": "synthetic_radar", "radar": "radar", "kth": "kth"}
ENSEMBLE_REFERENCE = "steps"  # the probabilistic skill scores are measured against the method of this name
SAMPLE_PROBABILITY_DBZ = 30.0  # the sample strips of an ensemble show the probability of this reflectivity


# ----------------------------------------------------------------------------------- scoring


@dataclass
class Scorer:
    """Accumulates one method's scores over batches; keeps the chosen samples for pictures.

    Predictions are (B, L, C, H, W) or, from an ensemble, (B, M, L, C, H, W). The probabilistic
    scores (nowcast protocol) are made at the first batch, when the number of members is known.
    """

    protocol: str
    output_length: int
    scaling: Scaling
    keep: tuple[int, ...] = ()
    paper: PaperScores | None = None
    skill: SkillScores | None = None
    ensemble: EnsembleScores | None = None
    members: int | None = None  # None until the first batch; 1 for a deterministic forecaster
    seen: int = 0
    samples: dict[int, np.ndarray] = field(default_factory=dict)  # index -> (steps, C, H, W); an ensemble's mean
    probabilities: dict[int, np.ndarray] = field(default_factory=dict)  # ensembles: index -> (steps, H, W)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol in ("paper", "both"):
            self.paper = PaperScores.init(self.output_length)
        if self.protocol in ("nowcast", "both"):
            self.skill = SkillScores.init(self.output_length)

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """truth (B, L, C, H, W), pred (B, L, C, H, W) or (B, M, L, C, H, W), in model space; pred may be unclipped."""
        members = pred.shape[1] if pred.ndim == 6 else 1
        if self.members is not None and members != self.members:
            raise ValueError(f"a forecaster gave {members} members after {self.members}")
        self.members = members
        # The deterministic scores of an ensemble are its mean's: model space is linear in dBZ, so this
        # is the mean of the members in dBZ (model.ensemble.ensemble_mean).
        deterministic = pred.mean(axis=1, dtype=np.float32) if pred.ndim == 6 else pred
        if self.paper is not None:
            self.paper.accum(truth, deterministic)
        ensemble = pred if pred.ndim == 6 else pred[:, None]  # a deterministic forecast: one member (a view)
        if self.skill is not None:
            if truth.shape[2] != 1:
                raise ValueError(f"the nowcast protocol needs one channel (reflectivity), got {truth.shape[2]}")
            truth_dbz = model_to_dbz(truth[:, :, 0], self.scaling)
            self.skill.accum(truth_dbz, model_to_dbz(deterministic[:, :, 0], self.scaling))
            if self.ensemble is None:
                self.ensemble = EnsembleScores.init(self.output_length, members)
            for i in range(truth.shape[0]):  # one sequence's members in dBZ at a time, not the batch's
                self.ensemble.accum(truth_dbz[i : i + 1], model_to_dbz(ensemble[i : i + 1, :, :, 0], self.scaling))
        for index in self.keep:
            if self.seen <= index < self.seen + truth.shape[0]:
                self.samples[index] = np.clip(deterministic[index - self.seen], 0.0, 1.0)
                if members > 1 and self.skill is not None:
                    members_dbz = model_to_dbz(ensemble[index - self.seen, :, :, 0], self.scaling)
                    self.probabilities[index] = np.mean(members_dbz >= SAMPLE_PROBABILITY_DBZ, axis=0,
                                                        dtype=np.float32)
        self.seen += truth.shape[0]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sequences": self.seen}
        if self.members is not None:
            out["members"] = self.members
        if self.paper is not None:
            out["paper"] = self.paper.compute()
        if self.skill is not None:
            out["nowcast"] = self.skill.compute()
        if self.ensemble is not None:
            out["probabilistic"] = self.ensemble.compute()
        return out


def auto_protocol(scaling: Scaling) -> str:
    """'paper' for frames without a physical unit, 'both' for reflectivity."""
    return "paper" if scaling.get("kind") == "identity" else "both"


def as_forecaster(method: Any, scaling: Scaling, device: Any = None) -> tuple[str, Forecaster]:
    """(name, forecaster on model-space batches) for a PredRNN, a baseline name or a callable."""
    if isinstance(method, str):
        from model.baselines import forecast_model_space, get_method

        name = get_method(method).__name__  # validates the name

        def baseline(context: np.ndarray, steps: int) -> np.ndarray:
            return forecast_model_space(name, context, steps, scaling)

        return name, baseline
    if hasattr(method, "forecast") and hasattr(method, "config"):
        import torch

        target = torch.device(device or "cpu")
        model = method.to(target)

        from model.forecast import forecast_frames

        def network(context: np.ndarray, steps: int) -> np.ndarray:
            # forecast_frames honours the checkpoint's frame (a Lagrangian model advects).
            was_training = model.training
            model.eval()
            try:
                return forecast_frames(model, np.asarray(context, dtype=np.float32), steps, "fp32", target,
                                       scaling=scaling)
            finally:
                model.train(was_training)

        return "predrnn", network
    if callable(method):
        return getattr(method, "__name__", "forecaster"), method
    raise TypeError(f"cannot evaluate a {type(method).__name__}: give a PredRNN, a baseline name or a callable")


def run_methods(
    methods: dict[str, Forecaster],
    source: Any,
    split: str = "test",
    protocol: str | None = None,
    *,
    batch_size: int = 8,
    max_sequences: int = 0,
    keep: tuple[int, ...] = (),
) -> tuple[dict[str, Any], dict[str, Scorer], dict[int, np.ndarray]]:
    """Score several forecasters on exactly the same sequences (each batch is drawn once).

    Returns the results per method, the scorers (with kept predictions) and the kept sequences
    (index -> (T, C, H, W) ground truth, context included).
    """
    scaling: Scaling = getattr(source, "scaling", DEFAULT_SCALING)
    protocol = protocol or auto_protocol(scaling)
    t_in, t_total = int(source.input_length), int(source.total_length)
    steps = t_total - t_in
    scorers = {name: Scorer(protocol, steps, scaling, keep) for name in methods}
    timings = dict.fromkeys(methods, 0.0)
    kept: dict[int, np.ndarray] = {}
    seen = 0
    total = max_sequences or getattr(source, "split_sizes", {}).get(split)  # None when the source cannot say
    started_all = last_report = time.perf_counter()
    for batch in source.eval_batches(split, batch_size):
        if max_sequences and seen >= max_sequences:
            break
        if max_sequences:
            batch = batch[: max_sequences - seen]
        if batch.ndim != 5 or batch.shape[1] != t_total:
            raise ValueError(f"source gave a batch of shape {batch.shape}, expected (B, {t_total}, C, H, W)")
        context, truth = batch[:, :t_in], batch[:, t_in:]
        for name, forecaster in methods.items():
            started = time.perf_counter()
            pred = np.asarray(forecaster(context, steps), dtype=np.float32)
            timings[name] += time.perf_counter() - started
            # An ensemble: (B, M, steps, C, H, W).
            shape = pred.shape[:1] + pred.shape[2:] if pred.ndim == 6 else pred.shape
            if shape != truth.shape:
                raise ValueError(f"{name} predicted {pred.shape}, expected {truth.shape} (or an ensemble's "
                                 f"(B, M, ...) of it)")
            scorers[name].add(truth, pred)
        for index in keep:
            if seen <= index < seen + batch.shape[0]:
                kept[index] = batch[index - seen]
        seen += batch.shape[0]
        now = time.perf_counter()
        if now - last_report >= PROGRESS_SECONDS:
            last_report = now
            _log_progress(seen, total, now - started_all, timings)
    if seen == 0:
        raise ValueError(f"the source gave no {split!r} sequences")
    results = {}
    for name, scorer in scorers.items():
        results[name] = {
            "method": name, "split": split, "protocol": protocol, "input_length": t_in,
            "output_length": steps, "timestep_minutes": getattr(source, "timestep_minutes", None),
            "seconds": round(timings[name], 3), "limited_to": max_sequences or None, **scorer.result(),
        }
    add_reference_skill(results)
    return results, scorers, kept


def add_reference_skill(results: dict[str, dict[str, Any]], reference: str = ENSEMBLE_REFERENCE) -> None:
    """With ``reference`` among the probabilistic results, give the others ``crps_skill_vs_<reference>``
    [per lead] and ``brier_skill_vs_<reference>`` {threshold: [per lead]} (1 - score / reference's)."""
    base = results.get(reference, {}).get("probabilistic")
    if not base:
        return
    for name, result in results.items():
        if name == reference or not result.get("probabilistic"):
            continue
        result[f"crps_skill_vs_{reference}"] = crps_skill_against(result["probabilistic"], base)
        result[f"brier_skill_vs_{reference}"] = brier_skill_against(result["probabilistic"], base)


def steps_forecaster(scaling: Scaling, members: int, seed: int = 0, timestep_minutes: float = 6.0,
                     **options: Any) -> Forecaster:
    """pysteps STEPS (``model.baselines.steps_ensemble``) on model-space batches -> (B, M, steps, C, H, W).

    Sequence ``n`` of the run (counted over calls, so whatever the batch size) uses the seed
    ``seed + n``: every sequence gets its own draws and a rerun the same ones.
    """
    from model.baselines import steps_ensemble

    state = {"seen": 0}

    def forecast(context: np.ndarray, steps: int) -> np.ndarray:
        context = np.asarray(context, dtype=np.float32)
        b, _, c, h, w = context.shape
        out = np.empty((b, members, steps, c, h, w), dtype=np.float32)
        for i in range(b):
            for ch in range(c):
                members_dbz = steps_ensemble(model_to_dbz(context[i, :, ch], scaling), steps, members=members,
                                             seed=seed + state["seen"] + i, timestep_minutes=timestep_minutes,
                                             zerovalue=float(scaling["dbz_min"]), **options)
                out[i, :, :, ch] = dbz_to_model(members_dbz, scaling)
        state["seen"] += b
        return out

    forecast.__name__ = "steps"
    return forecast


def ensemble_forecaster(model: Any, scaling: Scaling, members: int, seed: int = 0, settings: Any = None,
                        device: Any = None) -> Forecaster:
    """A PredRNN's ensemble (``model.ensemble.forecast_ensemble_frames``) -> (B, M, steps, 1, H, W).

    Sequence ``n`` of the run uses the seed ``seed + n``, whatever the batch size.
    """
    import torch

    from model.ensemble import forecast_ensemble_frames

    target = torch.device(device or "cpu")
    model = model.to(target)
    state = {"seen": 0}

    def forecast(context: np.ndarray, steps: int) -> np.ndarray:
        was_training = model.training
        model.eval()
        try:
            out = forecast_ensemble_frames(model, np.asarray(context, dtype=np.float32), steps, members=members,
                                           seed=seed + state["seen"], settings=settings, device=target,
                                           scaling=scaling)
        finally:
            model.train(was_training)
        state["seen"] += out.shape[0]
        return out

    return forecast


PROGRESS_SECONDS = 20.0  # a progress line at most this often: a 100-storm run takes minutes


def _log_progress(seen: int, total: int | None, elapsed: float, timings: dict[str, float]) -> None:
    rate = seen / elapsed
    eta = f", ETA {format_duration((total - seen) / rate)}" if total else ""
    shares = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    log.info("evaluated %d%s sequences, %.2f sequences/s%s (%s)", seen, f"/{total}" if total else "", rate, eta,
             shares)


def evaluate_model(
    model_or_forecaster: Any,
    source: Any,
    split: str = "test",
    protocol: str | None = None,
    *,
    batch_size: int = 8,
    device: Any = None,
    max_sequences: int = 0,
) -> dict[str, Any]:
    """Score one model, baseline or forecaster on ``split`` of ``source`` (every sequence).

    Returns
    -------
    dict
        Strict-JSON-ready: ``method``, ``split``, ``protocol``, ``sequences``, and ``paper``
        (per-frame MSE, MAE, SSIM, PSNR and their means) and/or ``nowcast`` (CSI, POD, FAR, bias,
        FSS per threshold and lead time, MAE and RMSE in dBZ).
    """
    scaling: Scaling = getattr(source, "scaling", DEFAULT_SCALING)
    name, forecaster = as_forecaster(model_or_forecaster, scaling, device)
    results, _, _ = run_methods({name: forecaster}, source, split, protocol,
                                batch_size=batch_size, max_sequences=max_sequences)
    return json_safe(results[name])


def score_arrays(truth: np.ndarray, pred: np.ndarray, protocol: str, *, chunk: int = 64,
                 scaling: Scaling = DEFAULT_SCALING) -> dict[str, Any]:
    """Score (N, T, C, H, W) arrays in [0, 1] in chunks (they may be memory-mapped)."""
    scorer = Scorer(protocol, truth.shape[1], scaling)
    for start in range(0, truth.shape[0], chunk):
        scorer.add(np.asarray(truth[start : start + chunk], dtype=np.float32),
                   np.asarray(pred[start : start + chunk], dtype=np.float32))
    return {"method": "predictions", "protocol": protocol, "output_length": truth.shape[1], **scorer.result()}


# ----------------------------------------------------------------------------------- reports


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.1f}"


COMPARISON_LEADS_MINUTES = (6, 30, 60, 120)
COMPARISON_THRESHOLDS = ("20dBZ", "30dBZ", "40dBZ")


def comparison_table(results: dict[str, dict[str, Any]], reference: str = "extrapolation") -> list[str]:
    """Markdown lines: CSI per threshold at a few lead times for every method, side by side.

    With ``reference`` among the methods, a last column per threshold gives each method's worst
    difference to it over all lead times (min over leads of CSI - CSI_reference): the number that
    says whether a model is ever worse than the operational baseline, not just on average.
    """
    scored = {name: r for name, r in results.items() if r.get("nowcast")}
    if len(scored) < 2:
        return []
    first = next(iter(scored.values()))
    step = first.get("timestep_minutes") or 1
    n_leads = len(first["nowcast"]["lead_steps"])
    columns = [int(m // step) for m in COMPARISON_LEADS_MINUTES if m % step == 0 and 1 <= m // step <= n_leads]
    label = " / ".join(f"{k * step:g}" for k in columns)
    has_reference = reference in scored
    header = ["method"] + [f"CSI {t} at {label} min" for t in COMPARISON_THRESHOLDS]
    if has_reference:
        header += [f"worst CSI {t} - {reference}" for t in COMPARISON_THRESHOLDS]
    lines = ["## Comparison", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, result in scored.items():
        csi = result["nowcast"]["csi"]
        cells = [" / ".join(_fmt(csi[t][k - 1], 3) for k in columns) for t in COMPARISON_THRESHOLDS]
        if has_reference:
            ref = scored[reference]["nowcast"]["csi"]
            for t in COMPARISON_THRESHOLDS:
                gaps = [a - b for a, b in zip(csi[t], ref[t], strict=True) if a is not None and b is not None]
                cells.append(f"{min(gaps):+.3f}" if gaps else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _lead_columns(result: dict[str, Any], minutes: tuple[int, ...], n_leads: int) -> list[int]:
    """1-based lead steps at ``minutes`` that fall on the result's time grid."""
    step = result.get("timestep_minutes") or 1
    return [int(m // step) for m in minutes if m % step == 0 and 1 <= m // step <= n_leads]


def _at(values: list[Any] | None, leads: list[int], digits: int = 3) -> str:
    if not values or not leads:
        return "n/a"
    return " / ".join(_fmt(values[k - 1], digits) for k in leads)


def probabilistic_table(results: dict[str, dict[str, Any]], reference: str = ENSEMBLE_REFERENCE) -> list[str]:
    """Markdown lines: per method (members) CRPS, Brier skill against ``reference``, spread-skill and ROC area."""
    scored = {name: r for name, r in results.items() if r.get("probabilistic")}
    if not scored:
        return []
    first = next(iter(scored.values()))
    n_leads = len(first["probabilistic"]["lead_steps"])
    step = first.get("timestep_minutes") or 1
    crps_leads = _lead_columns(first, COMPARISON_LEADS_MINUTES, n_leads)
    detail = _lead_columns(first, (30, 60), n_leads)

    def label(leads: list[int]) -> str:
        return " / ".join(f"{k * step:g}" for k in leads) + (" min" if first.get("timestep_minutes") else " steps")

    bss_key = f"brier_skill_vs_{reference}"
    header = ["method", "members", f"CRPS dBZ at {label(crps_leads)}",
              f"BSS vs {reference} 20 dBZ at {label(detail)}", f"BSS vs {reference} 30 dBZ at {label(detail)}",
              f"spread-skill at {label(detail)}", f"ROC area 30 dBZ at {label(detail)}"]
    lines = ["## Probabilistic", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, result in scored.items():
        prob = result["probabilistic"]
        bss = result.get(bss_key, {})
        cells = [str(prob["members"]), _at(prob["crps_dbz"], crps_leads),
                 "ref" if name == reference else _at(bss.get("20dBZ"), detail),
                 "ref" if name == reference else _at(bss.get("30dBZ"), detail),
                 _at(prob["spread_skill"]["ratio"], detail) if prob["members"] > 1 else "-",
                 _at(prob["roc_area"].get("30dBZ"), detail)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    floor = first["probabilistic"]["floor_dbz"]
    lines += ["", f"Values below {floor:g} dBZ count as {floor:g} dBZ; a deterministic method is a one-member "
              "ensemble (CRPS = MAE). "
              "BSS = 1 - Brier / Brier of the reference; spread-skill 1 = well dispersed.", ""]
    return lines


def markdown_report(results: dict[str, dict[str, Any]]) -> str:
    """Markdown tables of strict-JSON results: the comparison, then one section per method."""
    lines: list[str] = comparison_table(results) + probabilistic_table(results)
    for name, result in results.items():
        lines += [f"## {name}", "", f"{result.get('sequences')} sequences, split {result.get('split', '-')}, "
                  f"protocol {result.get('protocol')}.", ""]
        paper = result.get("paper")
        if paper:
            lines += ["| frame | MSE | MAE | SSIM | PSNR |", "|---|---|---|---|---|"]
            per = paper["per_frame"]
            for i in range(len(per["mse"])):
                lines.append(f"| {i + 1} | {_fmt(per['mse'][i])} | {_fmt(per['mae'][i])} | "
                             f"{_fmt(per['ssim'][i])} | {_fmt(per['psnr'][i])} |")
            mean = paper["mean"]
            lines.append(f"| **mean** | **{_fmt(mean['mse'])}** | **{_fmt(mean['mae'])}** | "
                         f"**{_fmt(mean['ssim'])}** | **{_fmt(mean['psnr'])}** |")
            lines += ["", "MSE and MAE are summed over a frame's pixels ([0, 1] units), averaged over sequences; "
                      f"LPIPS: {paper.get('lpips_note', 'n/a')}.", ""]
        skill = result.get("nowcast")
        if skill:
            step = result.get("timestep_minutes")
            names = list(skill["thresholds"])
            lead = [f"{k * step:g} min" if step else f"+{k}" for k in skill["lead_steps"]]
            lines += ["| lead | " + " | ".join(f"CSI {n}" for n in names) + " | MAE dBZ | RMSE dBZ |",
                      "|---" * (len(names) + 3) + "|"]
            for i, label in enumerate(lead):
                cells = [_fmt(skill["csi"][n][i], 3) for n in names]
                lines.append(f"| {label} | " + " | ".join(cells)
                             + f" | {_fmt(skill['mae_dbz'][i], 3)} | {_fmt(skill['rmse_dbz'][i], 3)} |")
            dbz_names = [n for n in names if n.endswith("dBZ")]
            lines += ["", "| lead | " + " | ".join(f"POD / FAR / bias {n}" for n in dbz_names) + " |",
                      "|---" * (len(dbz_names) + 1) + "|"]
            for i, label in enumerate(lead):
                cells = [" / ".join(_fmt(skill[k][n][i], 3) for k in ("pod", "far", "bias")) for n in dbz_names]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            scales = list(next(iter(skill["fss"].values())))
            lines += ["", "FSS, mean over lead times:", "",
                      "| threshold | " + " | ".join(f"{s} px" for s in scales) + " |",
                      "|---" * (len(scales) + 1) + "|"]
            for n in dbz_names:
                cells = []
                for s in scales:
                    values = [v for v in skill["fss"][n][s] if v is not None]
                    cells.append(_fmt(float(np.mean(values)), 3) if values else "n/a")
                lines.append(f"| {n} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def write_outputs(results: dict[str, dict[str, Any]], json_path: Path) -> list[Path]:
    """OUT.json (strict JSON), OUT.md, OUT_skill.png and, with probabilistic scores, OUT_probabilistic.png."""
    safe = json_safe(results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(safe, indent=1, allow_nan=False) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown_report(safe))
    png_path = plot_skill(safe, json_path.with_name(json_path.stem + "_skill.png"))
    written = [json_path, md_path, png_path]
    if any(r.get("probabilistic") for r in safe.values()):
        from model.visualization.ensemble import plot_probabilistic

        written.append(plot_probabilistic(safe, json_path.with_name(json_path.stem + "_probabilistic.png"),
                                          reference=ENSEMBLE_REFERENCE))
    return written
