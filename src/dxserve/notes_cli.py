"""``dxserve notes deid`` and ``dxserve notes analyse``: clinical notes in batch, from files or
folders of ``.txt``; ``dxserve notes calibrate``: refit the ICD-10-CM scores on phantom notes."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dxserve.progress import bar
from dxserve.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from dxserve.core.intake.deidentify import Pseudonyms
    from dxserve.core.text.phi_rules import PhiSpan

notes_app = typer.Typer(help="De-identify and analyse clinical notes in batch.")
console = Console(stderr=True)
FilesArgument = Annotated[
    list[Path], typer.Argument(help="Note files (UTF-8 text), or folders of .txt files.")
]
OutOption = Annotated[Path, typer.Option(help="Folder to write the results to.")]
TenantOption = Annotated[
    str | None,
    typer.Option(
        help="Use this tenant's pseudonyms (the same stand-ins and date offsets as the server "
        "gives its notes); without it, stand-ins from a key made for this run only."
    ),
]


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.txt")))
        elif path.is_file():
            found.append(path)
        else:
            raise typer.BadParameter(f"{path} is neither a file nor a folder")
    return found


def _pseudonyms(tenant: str | None) -> "Pseudonyms":
    import secrets

    from dxserve.core.intake.deidentify import Pseudonyms

    if tenant is None:
        return Pseudonyms(secrets.token_bytes(32))
    from dxserve.core.security.envelope import KeyRing
    from dxserve.store.accounts import Accounts
    from dxserve.store.database import make_engine
    from dxserve.store.identities import Identities

    settings = Settings()
    engine = make_engine(settings.database)
    keys = KeyRing.from_settings(settings.master_secret, settings.master_key_file)
    return Identities(engine, keys).pseudonyms(Accounts(engine).tenant_id(tenant))


def _tagger() -> "Callable[[str], tuple[list[PhiSpan], str]] | None":
    """The repository's PHI tagger as a function of a note's text; None (rules only, said)
    when there is none."""
    from dxserve.core.runtime.onnx import OnnxModel
    from dxserve.core.runtime.repository import ModelRepository
    from dxserve.core.text.phi_tagger import NAME_MODEL, TaggedNames
    from dxserve.errors import ModelNotFound

    try:
        model = OnnxModel(ModelRepository(Settings().repository).resolve(NAME_MODEL))
    except ModelNotFound:
        console.print(
            f"[yellow]no {NAME_MODEL} in the model repository: names in running text "
            "will not be found (dxserve notes train makes one)"
        )
        return None
    finder = f"{model.ref.name}:{model.ref.version}"

    def tag(text: str) -> "tuple[list[PhiSpan], str]":
        tagged = TaggedNames.of(text, lambda w: model.run_batches(w)["probability"])
        return tagged.phi(model.manifest.threshold), finder

    return tag


def _run(files: list[Path], out: Path, tenant: str | None, tags: bool, analyse: bool) -> None:
    import json

    from dxserve.core.text.analysis import analyse_note
    from dxserve.core.text.note_body import read_note
    from dxserve.errors import InvalidInput

    pseudonyms = _pseudonyms(tenant)
    tagger = _tagger()
    notes = _files(files)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with bar(console) as progress:
        task = progress.add_task("notes", total=len(notes), status="")
        for path in notes:
            try:
                note = read_note(path.read_bytes(), "text/plain")
            except InvalidInput as error:  # says what is wrong, never what the note says
                console.print(f"[yellow]skipped {path.name}: {error}")
                failed += 1
                progress.advance(task)
                continue
            names, finder = tagger(note.text) if tagger else ([], None)
            result = analyse_note(note.text, pseudonyms, None, tags, names, finder)
            if analyse:
                target = out / f"{path.stem}.json"
                target.write_text(json.dumps(result.to_dict(), indent=1, ensure_ascii=False))
            else:
                (out / path.name).write_text(result.deidentified_text, encoding="utf-8")
            progress.advance(task)
    console.print(f"wrote {len(notes) - failed} of {len(notes)} notes to {out}")
    if failed:
        raise typer.Exit(1)


@notes_app.command("deid")
def deid(
    files: FilesArgument,
    out: OutOption,
    tenant: TenantOption = None,
    tag: Annotated[bool, typer.Option(help="Replace identifiers by [TYPE] tags.")] = False,
) -> None:
    """Write each note with its identifiers replaced (same file name, in --out)."""
    _run(files, out, tenant, tag, analyse=False)


@notes_app.command("analyse")
def analyse(files: FilesArgument, out: OutOption, tenant: TenantOption = None) -> None:
    """Write each note's analysis as JSON (as POST /v1/notes answers, without the id)."""
    _run(files, out, tenant, False, analyse=True)


@notes_app.command("train")
def train(
    out: Annotated[Path | None, typer.Option(help="Model repository (default: settings).")] = None,
    n: Annotated[int, typer.Option("--n", min=50, help="Phantom notes to train on.")] = 3000,
    epochs: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train the PHI tagger (names in running text) on phantom notes of the training families,
    evaluate it with the rules on the held-out families, and add it to the repository."""
    run_tagger_training(out or Settings().repository, n, epochs, seed)


def run_tagger_training(repository: Path, n: int, epochs: int, seed: int) -> None:
    """``dxserve notes train`` with a progress bar; shared with the demo models of ``serve``."""
    try:
        from dxserve.training.phi_tagger import TaggerConfig, train_tagger
    except ImportError as exc:
        from dxserve.errors import MissingDependency

        raise MissingDependency(f"training needs the train extra ({exc.name} is missing)") from None
    config = TaggerConfig(notes=n, epochs=epochs, seed=seed)
    with bar(console) as progress:
        task = progress.add_task("PHI tagger epochs", total=epochs, status="")

        def on_epoch(epoch: int, loss: float) -> None:
            progress.update(task, advance=1, status=f"loss {loss:.4f}")

        result = train_tagger(repository, config, on_epoch)
    held_out = result.evaluation["rules_and_tagger"]
    console.print(
        f"wrote {result.ref.name}:{result.ref.version} (threshold {result.threshold}); held-out "
        f"kinds of note, with the rules: name recall {held_out['NAME']['recall']:.3f}, "
        f"all identifiers {held_out['ALL']['recall']:.3f}, precision {held_out['ALL']['precision']:.3f}"
    )


@notes_app.command("calibrate")
def calibrate(
    n: Annotated[int, typer.Option("--n", min=10, help="Phantom notes to fit on.")] = 600,
    seed: Annotated[int, typer.Option(help="Their seed.")] = 21,
) -> None:
    """Refit the ICD-10-CM scores' calibration on phantom notes of the training families and
    write it into the package's rules (a developer's command: commit the result)."""
    from dxserve.core.text.coding import fit_calibration
    from dxserve.core.text.entities import find_entities
    from dxserve.core.text.finding_score import calibration_rows
    from dxserve.phantoms.notes.generate import notes

    rows = []
    with bar(console) as progress:
        task = progress.add_task("phantom notes", total=n, status="")
        for note in notes(n, seed):
            rows.extend(calibration_rows(note.findings, find_entities(note.text)))
            progress.advance(task)
    fitted_on = f"{n} phantom notes of the training families (seed {seed}), {len(rows)} candidates"
    data = fit_calibration(rows, fitted_on)
    console.print(
        f"fitted on {fitted_on}: coefficients {data['coef']}, intercept {data['intercept']}"
    )
