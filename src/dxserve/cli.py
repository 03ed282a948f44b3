"""The ``dxserve`` command line: phantoms, train, evaluate, models, serve."""

import json
import os
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from dxserve import __version__
from dxserve.admin_cli import audit_app, feedback_app, keys_app, set_alias, tenants_app, usage
from dxserve.backup_cli import backup_app, restore
from dxserve.core.runtime.repository import ModelRef, ModelRepository, parse_model_path
from dxserve.core.security.principal import Role
from dxserve.db_cli import db_app
from dxserve.dicomweb_cli import dicomweb_app
from dxserve.errors import DxError, MissingDependency
from dxserve.notes_cli import notes_app
from dxserve.phantoms import EXTRA_FINDINGS, FINDINGS
from dxserve.progress import bar
from dxserve.ray_cli import ray_app
from dxserve.settings import Settings

if TYPE_CHECKING:
    from dxserve.services import Services

app = typer.Typer(
    help="dxserve: self-hosted medical AI models as a service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(feedback_app, name="feedback")
app.add_typer(audit_app, name="audit")
app.add_typer(dicomweb_app, name="dicomweb")
app.add_typer(db_app, name="db")
app.add_typer(backup_app, name="backup")
app.add_typer(notes_app, name="notes")
app.add_typer(ray_app, name="ray")
app.command("restore")(restore)
app.command("alias")(set_alias)
app.command("usage")(usage)
console = Console(stderr=True)


class ImageFormat(StrEnum):
    png = "png"
    dicom = "dicom"


class Architecture(StrEnum):
    echo_cnn = "echo-cnn"
    ecg_rnn = "ecg-rnn"


def main() -> None:
    """Entry point: run the app, turning domain errors and invalid settings into a clear
    message and exit code 2."""
    try:
        app()
    except DxError as exc:
        console.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
        raise SystemExit(2) from None
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            setting = f"DXSERVE_{where.upper()}: " if where else ""
            console.print(f"[red]error[/red] (invalid_settings): {setting}{error['msg']}")
        raise SystemExit(2) from None


def _frames(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter("use a positive number of frames or 'all'")
    return int(value)


FramesOption = Annotated[
    str,
    typer.Option(
        "--frames", help="Frames per multi-frame file: a number (evenly spaced) or 'all'."
    ),
]


@app.command()
def version() -> None:
    """Print dxserve's version."""
    print(__version__)


phantoms_app = typer.Typer(
    help="Synthetic data with exact ground truth: echo phantoms (default), ECGs (`ecg`) or "
    "clinical notes (`notes`).",
    invoke_without_command=True,
)
app.add_typer(phantoms_app, name="phantoms")


@phantoms_app.callback()
def phantoms(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of studies.")] = 1000,
    seed: Annotated[int, typer.Option(help="Dataset seed: same seed, same images.")] = 0,
    size: Annotated[int, typer.Option(min=64, max=1024, help="Image side in pixels.")] = 256,
    fmt: Annotated[ImageFormat, typer.Option("--format", help="png or dicom.")] = ImageFormat.png,
    frames: Annotated[int, typer.Option(min=1, max=128, help="Cine frames (dicom).")] = 1,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    findings: Annotated[
        str,
        typer.Option(
            help="Comma-separated findings of the abnormal studies: effusion, thrombus, "
            "dilated_lv (the demo model's) and atrial_mass (one it never saw)."
        ),
    ] = ",".join(FINDINGS),
) -> None:
    """Generate synthetic apical 4-chamber echo phantoms with exact lesion masks."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("give --out DIR", param_hint="--out")
    chosen = tuple(f.strip() for f in findings.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FINDINGS) - set(EXTRA_FINDINGS))
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown findings {unknown or findings!r}", param_hint="--findings"
        )
    echo_phantoms(out, n, seed, size, fmt.value, frames, workers, chosen)


def echo_phantoms(
    out: Path,
    n: int,
    seed: int,
    size: int = 256,
    fmt: str = "png",
    frames: int = 1,
    workers: int | None = None,
    findings: tuple[str, ...] = FINDINGS,
) -> None:
    from dxserve.phantoms.generate import generate

    with bar(console) as progress:
        task = progress.add_task("phantoms", total=n, status="")
        manifest = generate(
            out,
            n,
            seed,
            size,
            fmt,
            frames,
            workers,
            on_progress=lambda k: progress.advance(task, k),
            findings=findings,
        )
    console.print(f"wrote {n} studies and {manifest}")


class SignalFormat(StrEnum):
    npz = "npz"
    wfdb = "wfdb"
    dicom = "dicom"


@phantoms_app.command("ecg")
def ecg_phantoms(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of records.")] = 1000,
    seed: Annotated[int, typer.Option(help="Dataset seed: same seed, same records.")] = 0,
    leads: Annotated[int, typer.Option(help="12, or 1 (lead II, as a wearable).")] = 12,
    seconds: Annotated[float, typer.Option(min=2.5, max=600, help="Record length.")] = 10.0,
    rate: Annotated[float, typer.Option(min=100, max=2000, help="Samples a second.")] = 500.0,
    fmt: Annotated[SignalFormat, typer.Option("--format", help="npz, wfdb or dicom.")] = (
        SignalFormat.npz
    ),
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
) -> None:
    """Generate synthetic 12-lead (or lead II) ECGs: sinus rhythm, bradycardia, tachycardia,
    atrial fibrillation, PVCs and first-degree AV block, with every beat's fiducial points."""
    from dxserve.phantoms.ecg.generate import generate_ecg

    if leads not in (1, 12):
        raise typer.BadParameter("use 12 or 1", param_hint="--leads")
    with bar(console) as progress:
        task = progress.add_task("ECG phantoms", total=n, status="")
        manifest = generate_ecg(
            out,
            n,
            seed,
            leads,
            seconds,
            rate,
            fmt.value,
            workers,
            on_progress=lambda k: progress.advance(task, k),
        )
    console.print(f"wrote {n} records and {manifest}")


@phantoms_app.command("notes")
def note_phantoms(
    out: Annotated[Path, typer.Option(help="JSON-lines file to write.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of notes.")] = 1000,
    seed: Annotated[int, typer.Option(help="Dataset seed: same seed, same notes.")] = 0,
    held_out: Annotated[
        bool, typer.Option(help="Write the held-out kinds of note instead of the training ones.")
    ] = False,
) -> None:
    """Generate synthetic clinical notes with their truth: every identifier's span and HIPAA
    type, every finding's span, assertion and ICD-10-CM code."""
    from dxserve.phantoms.notes.generate import write_notes

    with bar(console) as progress:
        task = progress.add_task("note phantoms", total=n, status="")
        write_notes(out, n, seed, held_out, on_progress=lambda k: progress.advance(task, k))
    console.print(f"wrote {n} notes to {out}")


@app.command()
def train(
    architecture: Annotated[Architecture, typer.Argument(help="Network to train.")],
    data: Annotated[Path, typer.Option(help="Dataset: class folders, CSV manifest or EchoNet.")],
    out: Annotated[Path | None, typer.Option(help="Model repository (default: settings).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: 10.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option("--lr", min=0)] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    frames: FramesOption = "1",
) -> None:
    """Train a model on a dataset and add it to the repository as a new version."""
    ref = run_training(
        data,
        out or Settings().repository,
        architecture.value,
        epochs,
        batch_size,
        learning_rate,
        seed,
        _frames(frames),
    )
    console.print(f"[green]model ready[/green] {ref} at {ref.path}")


def run_training(
    data: Path,
    repository: Path,
    name: str,
    epochs: int | None,
    batch_size: int,
    learning_rate: float,
    seed: int,
    frames: int | None,
) -> ModelRef:
    """Train with Rich progress bars; shared by ``train`` and the demo models of ``serve``.
    ``name`` is the architecture (``echo-cnn`` or ``ecg-rnn``) and the model's name."""
    try:
        from dxserve.training.loop import EpochStats, Observer, TrainConfig
        from dxserve.training.loop import train as train_model
    except ImportError as exc:
        raise MissingDependency(f"training needs the train extra ({exc.name} is missing)") from None

    table = Table("epoch", "loss", "acc", "val loss", "val acc", "AUC", "sens", "spec", "rec/s")
    with bar(console) as progress:
        task = progress.add_task("", total=0, status="")
        total = epochs or 0

        def on_data(stage: str, count: int) -> None:
            progress.reset(task, total=count, description=f"load {stage}", status="")

        def on_epoch_start(epoch: int, batches: int) -> None:
            progress.reset(task, total=batches, description=f"epoch {epoch}/{total}", status="")

        def on_batch(loss: float) -> None:
            progress.update(task, advance=1, status=f"loss {loss:.4f}")

        def on_epoch(s: EpochStats) -> None:
            v = s.val
            table.add_row(
                str(s.epoch),
                f"{s.train_loss:.4f}",
                f"{s.train_accuracy:.3f}",
                f"{s.val_loss:.4f}",
                f"{v['accuracy']:.3f}",
                _fmt(v["auc"]),
                _fmt(v["sensitivity"]),
                _fmt(v["specificity"]),
                f"{s.images_per_second:.0f}",
            )
            progress.console.print(
                f"epoch {s.epoch}: loss {s.train_loss:.4f} val AUC {_fmt(v['auc'])}"
            )

        observer = Observer(
            on_data=on_data,
            on_data_step=lambda k: progress.advance(task, k),
            on_epoch_start=on_epoch_start,
            on_batch=on_batch,
            on_epoch=on_epoch,
        )
        if name == Architecture.ecg_rnn:
            from dxserve.datasets.signals import open_signal_dataset
            from dxserve.training.ecg import EcgTrainConfig, train_ecg

            config = EcgTrainConfig(batch_size=batch_size, learning_rate=learning_rate, seed=seed)
            config = replace(config, epochs=epochs or config.epochs)
            total = config.epochs
            result = train_ecg(open_signal_dataset(data), repository, name, config, observer)
        else:
            from dxserve.datasets import open_dataset

            total = epochs or 10
            train_config = TrainConfig(total, batch_size, learning_rate, seed, frames)
            result = train_model(open_dataset(data), repository, name, train_config, observer)
    console.print(table)
    console.print(
        f"best epoch {result.best_epoch}; ONNX export max |Δ| vs PyTorch {result.export_max_abs_diff:.1e}"
    )
    return result.ref


def _fmt(value: object) -> str:
    return "–" if value is None else f"{value:.3f}"


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="REPO/model or REPO/model/VERSION.")],
    data: Annotated[Path, typer.Option(help="Labelled dataset.")],
    split: Annotated[
        str | None, typer.Option(help="train, val, test or all (default: test if present).")
    ] = None,
    frames: FramesOption = "1",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    roc: Annotated[Path | None, typer.Option(help="Where to write the ROC curve PNG.")] = None,
    reliability: Annotated[
        Path | None, typer.Option(help="Where to write the reliability diagram PNG.")
    ] = None,
    record: Annotated[bool, typer.Option(help="Store the result in the model's manifest.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            help="Also measure saliency localisation on lesion masks and the "
            "out-of-distribution guard on non-echo images."
        ),
    ] = False,
) -> None:
    """Evaluate a model version on a labelled dataset (ONNX Runtime, as served)."""
    result = run_evaluation(
        model,
        data,
        split,
        _frames(frames),
        roc,
        record,
        quiet=as_json,
        reliability=reliability,
        explain=explain,
    )
    if as_json:
        print(json.dumps(result))


def _trust_rows(table: Table, summary: dict[str, Any]) -> None:
    """Rows for localisation and the out-of-distribution guard."""
    ood = summary["ood"]
    table.add_row("OOD false refusals (this split)", _fmt(ood["false_refusal_rate"]))
    for name, rates in ood.get("refusal_rates", {}).items():
        table.add_row(
            f"OOD refused: {name}", f"{rates['refused']}/{rates['n']} ({rates['rate']:.0%})"
        )
    explanation = summary.get("explanation")
    if not explanation:
        return
    for method, scores in explanation["methods"].items():
        served = " (served)" if method == explanation["served_method"] else ""
        table.add_row(
            f"{method}{served}: pointing game ±{explanation['tolerance_px']} px / strict "
            f"/ relevance mass (n={scores['n']})",
            f"{scores['pointing_game']:.3f} / {scores['pointing_game_strict']:.3f} / "
            f"{scores['relevance_mass']:.3f}",
        )


def run_evaluation(
    model: str,
    data: Path,
    split: str | None,
    frames: int | None,
    roc: Path | None,
    record: bool,
    quiet: bool = False,
    reliability: Path | None = None,
    explain: bool = False,
) -> dict[str, Any]:
    from dxserve.datasets import open_dataset
    from dxserve.training.evaluate import default_split, plot_reliability, plot_roc
    from dxserve.training.evaluate import evaluate as evaluate_model

    root, name, version = parse_model_path(model)
    ref = ModelRepository(root).resolve(name, version)
    if ref.manifest().modality == "signal":
        return run_signal_evaluation(ref, data, split, record, quiet)
    dataset = open_dataset(data)
    split = split or default_split(dataset)
    with bar(console) as progress:
        task = progress.add_task("evaluate", total=len(dataset.subset(split)), status="")
        result = evaluate_model(
            ref, dataset, split, frames, lambda k: progress.advance(task, k), explain
        )
        if explain:
            progress.update(task, status="saliency and out-of-distribution sets")
    roc_path = plot_roc(result, roc or Path(f"roc-{ref.name}-v{ref.version}.png"))
    reliability_path = plot_reliability(
        result, reliability or roc_path.with_name(f"reliability-{ref.name}-v{ref.version}.png")
    )
    summary = {
        **result.to_dict(),
        "roc_png": str(roc_path),
        "reliability_png": str(reliability_path),
    }
    if record:
        manifest = ref.manifest()
        manifest.evaluations[f"{Path(data).name}:{result.split}"] = summary
        manifest.save(ref.path)
    if not quiet:
        m = result.metrics
        table = Table("metric", "value", title=f"{ref} on {data} [{result.split}]")
        for key in ("n", "positives", "accuracy", "auc", "sensitivity", "specificity"):
            value = getattr(m, key)
            table.add_row(key, str(value) if isinstance(value, int) else _fmt(value))
        table.add_row("confusion tn fp / fn tp", f"{m.tn} {m.fp} / {m.fn} {m.tp}")
        table.add_row(
            "ECE (15 bins) served / uncalibrated",
            f"{summary['ece']:.4f} / {summary['ece_uncalibrated']:.4f}",
        )
        table.add_row(
            "Brier served / uncalibrated",
            f"{summary['brier']:.4f} / {summary['brier_uncalibrated']:.4f}",
        )
        table.add_row("temperature", _fmt(result.temperature))
        abstention = result.abstention()
        if abstention:
            table.add_row(
                "indeterminate band / coverage / accuracy answered",
                f"[{abstention['low']:.2f}, {abstention['high']:.2f}) / "
                f"{abstention['coverage']:.3f} / {_fmt(abstention['accuracy_answered'])}",
            )
        _trust_rows(table, summary)
        table.add_row("ROC curve", str(roc_path))
        table.add_row("reliability diagram", str(reliability_path))
        console.print(table)
    return summary


def run_signal_evaluation(
    ref: ModelRef, data: Path, split: str | None, record: bool, quiet: bool
) -> dict[str, Any]:
    """``evaluate`` for a signal model: per-statement metrics, calibration, abstention, the
    single lead, and the measurements' errors where the dataset has exact intervals."""
    from dxserve.datasets.signals import open_signal_dataset
    from dxserve.training.evaluate_signal import evaluate_signal

    dataset = open_signal_dataset(data)
    split = split or ("test" if "test" in dataset.splits else "all")
    with bar(console) as progress:
        task = progress.add_task("evaluate", total=len(dataset.subset(split)), status="")
        result = evaluate_signal(ref, dataset, split, lambda k: progress.advance(task, k))
    if record:
        manifest = ref.manifest()
        manifest.evaluations[f"{Path(data).name}:{split}"] = result
        manifest.save(ref.path)
    if not quiet:
        table = Table(
            "statement",
            "AUC",
            "F1",
            "sens",
            "spec",
            "tn fp / fn tp",
            title=f"{ref} on {data} [{split}], {result['records']} records",
        )
        for label, m in result["per_class"].items():
            table.add_row(
                label,
                _fmt(m["auc"]),
                _fmt(m["f1"]),
                _fmt(m["sensitivity"]),
                _fmt(m["specificity"]),
                f"{m['tn']} {m['fp']} / {m['fn']} {m['tp']}",
            )
        table.add_row(
            "macro",
            _fmt(result["auc"]),
            _fmt(result["f1"]),
            _fmt(result["sensitivity"]),
            _fmt(result["specificity"]),
            "",
        )
        single = result["single_lead"]
        table.add_row(
            f"lead {single['lead']} alone (macro)",
            _fmt(single["auc"]),
            _fmt(single["f1"]),
            "",
            "",
            "",
        )
        console.print(table)
        summary = Table("measure", "value")
        summary.add_row("exact match", _fmt(result["accuracy"]))
        summary.add_row(
            "ECE served / uncalibrated", f"{result['ece']:.4f} / {result['ece_uncalibrated']:.4f}"
        )
        summary.add_row(
            "Brier served / uncalibrated",
            f"{result['brier']:.4f} / {result['brier_uncalibrated']:.4f}",
        )
        abstention = result["abstention"]
        summary.add_row(
            "answered without referral / exact match answered",
            f"{abstention['coverage']:.3f} / {_fmt(abstention['exact_match_answered'])}",
        )
        summary.add_row("OOD false refusals", _fmt(result["ood"]["false_refusal_rate"]))
        for key, mae in (result.get("measurements") or {}).get("mae", {}).items():
            measured = result["measurements"]
            summary.add_row(
                f"{key}: MAE (measured / absent)",
                f"{_fmt(mae)} ({measured['measured'][key]} / {measured['absent'][key]})",
            )
        console.print(summary)
    return result


def _interval(summary: dict[str, Any], key: str) -> str:
    low, high = summary["intervals_95"].get(key, (None, None))
    return f"{_fmt(summary[key])} [{_fmt(low)}, {_fmt(high)}]"


def _pointing_game(summary: dict[str, Any]) -> str:
    explanation = summary.get("explanation")
    if not explanation:
        return "–"
    return _fmt(explanation["methods"][explanation["served_method"]]["pointing_game"])


# Rows of the float-vs-int8 table of `dxserve quantize`, from two evaluation summaries.
COMPARED: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("AUC [95% interval]", lambda e: _interval(e, "auc")),
    ("ECE (served)", lambda e: _fmt(e["ece"])),
    ("Brier (served)", lambda e: _fmt(e["brier"])),
    ("answered / their accuracy", lambda e: _abstention(e["abstention"])),
    ("OOD false refusals", lambda e: _fmt(e["ood"]["false_refusal_rate"])),
    ("pointing game (served map)", _pointing_game),
]


def _abstention(abstention: dict[str, Any] | None) -> str:
    if not abstention:
        return "–"
    return f"{abstention['coverage']:.3f} / {_fmt(abstention['accuracy_answered'])}"


@app.command()
def quantize(
    model: Annotated[str, typer.Argument(help="REPO/model or REPO/model/VERSION.")],
    data: Annotated[
        Path, typer.Option(help="Labelled dataset: its training split calibrates the ranges.")
    ],
    frames: FramesOption = "1",
    held_out: Annotated[
        Path | None,
        typer.Option(help="Labelled dataset both versions are evaluated on (default: --data's)."),
    ] = None,
    images: Annotated[int, typer.Option(min=1, help="Training images calibrated on.")] = 256,
    check: Annotated[
        bool,
        typer.Option(help="Evaluate both versions on held-out data (recorded in the new one)."),
    ] = True,
) -> None:
    """Add a model version statically quantised to int8 (ONNX Runtime, QDQ), calibrated on
    training data, to the repository; roll it out by alias like any version."""
    try:
        from dxserve.datasets import open_dataset
        from dxserve.training.loop import Observer
        from dxserve.training.quantize import check_quantizable
        from dxserve.training.quantize import quantize as quantize_model
    except ImportError as exc:
        raise MissingDependency(
            f"quantizing needs the train extra ({exc.name} is missing)"
        ) from None

    root, name, version = parse_model_path(model)
    source = ModelRepository(root).resolve(name, version)
    check_quantizable(source)
    with bar(console) as progress:
        task = progress.add_task("load", total=0, status="")

        def on_data(stage: str, count: int) -> None:
            progress.reset(task, total=count, description=f"load {stage}", status="")

        observer = Observer(on_data=on_data, on_data_step=lambda k: progress.advance(task, k))
        result = quantize_model(source, open_dataset(data), root, _frames(frames), images, observer)
    console.print(
        f"[green]quantised[/green] {result.ref} at {result.ref.path} "
        f"({result.calibration_images} calibration images, {result.seconds:.0f} s)"
    )
    if not check:
        return
    judged, frames_read = held_out or data, _frames(frames)
    base = run_evaluation(
        str(source.path), judged, None, frames_read, None, False, True, None, True
    )
    int8 = run_evaluation(
        str(result.ref.path), judged, None, frames_read, None, True, True, None, True
    )
    table = Table(
        "",
        f"version {source.version}",
        f"version {result.ref.version} (int8)",
        title=f"{name} on {judged} [{int8['split']}]",
    )
    for label, pick in COMPARED:
        table.add_row(label, pick(base), pick(int8))
    for set_name in int8["ood"].get("refusal_rates", {}):
        table.add_row(
            f"OOD refused: {set_name}",
            *(f"{e['ood']['refusal_rates'][set_name]['rate']:.0%}" for e in (base, int8)),
        )
    console.print(table)


@app.command()
def card(
    model: Annotated[str, typer.Argument(help="REPO/model or REPO/model/VERSION.")],
) -> None:
    """Print a model version's card (Markdown), generated from its manifest."""
    from dxserve.core.results.card import render_card

    root, name, version = parse_model_path(model)
    print(render_card(ModelRepository(root).resolve(name, version).manifest()), end="")


@app.command()
def models(
    repository: Annotated[Path | None, typer.Option(help="Model repository.")] = None,
) -> None:
    """List the models and versions in the repository."""
    repo = ModelRepository(repository or Settings().repository)
    table = Table("model", "version", "labels", "threshold", "val AUC", "warning")
    for name in repo.models():
        for v in repo.versions(name):
            m = repo.resolve(name, v).manifest()
            auc = m.metrics.get("validation", {}).get("auc")
            table.add_row(
                name,
                str(v),
                "/".join(m.labels),
                f"{m.threshold:g}",
                _fmt(auc),
                m.clinical_use_warning or "",
            )
    console.print(table)


DataDirOption = Annotated[Path | None, typer.Option(help="Overrides DXSERVE_DATA_DIR.")]
RepositoryOption = Annotated[Path | None, typer.Option(help="Overrides DXSERVE_MODEL_REPOSITORY.")]


@app.command()
def prepare(
    data_dir: DataDirOption = None,
    model_repository: RepositoryOption = None,
) -> None:
    """Prepare the demo models (those absent) and a dev admin key (if there is no key), then exit."""
    settings = _settings(data_dir, model_repository)
    _prepare(settings, demo=True).close_stores()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default 8000).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="HTTP worker processes (default 1).")
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Prepare the demo model if the repository lacks it.")
    ] = True,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="As replicas on Ray Serve (the ray extra; needs PostgreSQL, DXSERVE_RAY_*).",
        ),
    ] = False,
    data_dir: DataDirOption = None,
    model_repository: RepositoryOption = None,
) -> None:
    """Serve the model repository over HTTP: the clinical API (/v1) and the OIP (/v2)."""
    import uvicorn

    from dxserve.api.app import create_app
    from dxserve.observability import configure_logging

    settings = _settings(data_dir, model_repository)
    settings = settings.model_copy(
        update={
            "host": host or settings.host,
            "port": port or settings.port,
            "workers": workers or settings.workers,
        }
    )
    if ray:
        from dxserve.ray_serve import NotShareable, check

        try:
            check(settings)
        except NotShareable as error:
            raise typer.BadParameter(str(error), param_hint="--ray") from None
    services = _prepare(settings, demo)
    configure_logging(settings.log_level)
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{settings.host}:{settings.port}"
    console.print(f"serving on {base}, {settings.workers} worker process(es)")
    console.print(f"  web app: {base}/ (sign in with an API key)")
    console.print(f"  API: {base}/v1 and {base}/v2 (docs at {base}/docs)")
    network: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
    }
    if ray:
        from dxserve.ray_serve import run

        services.close_stores()
        console.print(
            f"  on Ray Serve: {settings.ray_min_replicas}–{settings.ray_max_replicas} replicas"
        )
        run(settings)
        return
    if settings.workers == 1:
        uvicorn.run(create_app(services), **network)
        return
    services.close_stores()
    # Each worker process builds its own services from the environment: pass the settings on.
    os.environ.update(settings.as_environment())
    uvicorn.run("dxserve.server:build_app", factory=True, workers=settings.workers, **network)


@app.command()
def worker(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (DXSERVE_DATA_DIR).")
    ] = None,
    model_repository: Annotated[
        Path | None, typer.Option(help="Model repository (DXSERVE_MODEL_REPOSITORY).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run the queued jobs, then exit.")] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the queue.")] = 2.0,
) -> None:
    """Run tenants' training jobs (fine-tuning, evaluation) from the database queue (needs the
    `train` extra). Several workers may share a PostgreSQL queue; with SQLite, run one."""
    import signal
    import threading

    from dxserve.jobs.worker import Worker
    from dxserve.observability import configure_logging

    settings = _settings(data_dir, model_repository)
    configure_logging(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner = Worker.from_settings(settings)
    console.print(f"worker {runner.name} taking jobs from {settings.database.split('://')[0]}")
    done = runner.run(once=once, poll_s=poll, stop=stop)
    console.print(f"{done} jobs run")


def _settings(data_dir: Path | None, model_repository: Path | None) -> Settings:
    overrides = {"data_dir": data_dir, "model_repository": model_repository}
    return Settings().model_copy(update={k: v for k, v in overrides.items() if v})


def _prepare(settings: Settings, demo: bool) -> "Services":
    """Demo model and dev key when missing; the services, built and checked."""
    from dxserve.core.runtime.onnx import OnnxModel
    from dxserve.core.security.envelope import KeyRing
    from dxserve.demo import prepare_demo_models
    from dxserve.server import build_services

    KeyRing.from_settings(settings.master_secret, settings.master_key_file)  # refuse early
    repo = ModelRepository(settings.repository)
    if demo:
        prepare_demo_models(settings)
    for name in repo.models():
        model = OnnxModel(repo.resolve(name))
        console.print(f"[green]model ready[/green] {model.ref} ({model.ref.path / 'model.onnx'})")
        if model.manifest.clinical_use_warning:
            console.print(f"  [yellow]{model.manifest.clinical_use_warning}[/yellow]")
    services = build_services(settings)
    if not services.accounts.has_keys():
        tenant = "default"
        services.accounts.create_tenant(tenant)
        key_id, token = services.accounts.create_key(tenant, Role.admin, "dev")
        url = f"http://{settings.host}:{settings.port}"
        console.print(
            f"created tenant {tenant!r} and a dev admin key ({key_id}); it is shown only now:\n"
            f"  {token}\n"
            f"try:\n  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: image/png' "
            f"--data-binary @image.png {url}/v1/diagnoses",
            soft_wrap=True,
            markup=False,
        )
    return services
