"""The demo models, prepared on first ``dxserve serve``: the seed CNN on echo phantoms, the
seed's RNN on ECG phantoms, and the PHI tagger on phantom notes (the seed's NLP for clinical
text), each evaluated on phantoms it never saw (recorded in its manifest)."""

from rich.console import Console

from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.text.phi_tagger import NAME_MODEL
from dxserve.settings import Settings

TRAIN_STUDIES = 3000
TEST_STUDIES = 600
TRAIN_SEED = 1
TEST_SEED = 2  # held-out phantoms from another seed
ECG_TRAIN_RECORDS = 2000
ECG_TEST_RECORDS = 600
# The RNN reads 100 Hz: its training records need no more than 250 Hz (and take half the disk);
# the held-out records are at 500 Hz, an electrocardiograph's rate, to measure intervals on.
ECG_TRAIN_RATE = 250.0
ECG_TEST_RATE = 500.0
TAGGER_NOTES = 3000
TAGGER_EPOCHS = 4


def prepare_demo_models(settings: Settings, console: Console | None = None) -> None:
    """Each demo model the repository lacks: the default image model (``echo-cnn``), the
    default signal model (``ecg-rnn``) and the PHI tagger (``phi-tagger``)."""
    present = ModelRepository(settings.repository).models()
    if settings.default_model not in present:
        prepare_echo(settings, console)
    ecg = settings.model_for("signal")
    if ecg is not None and ecg not in present:
        prepare_ecg(settings, ecg, console)
    if NAME_MODEL not in present:
        from dxserve.notes_cli import run_tagger_training

        (console or Console()).print(f"preparing the demo {NAME_MODEL} (first run only)")
        run_tagger_training(settings.repository, TAGGER_NOTES, TAGGER_EPOCHS, 0)


def prepare_echo(settings: Settings, console: Console | None = None) -> None:
    """Generate phantoms, train ``settings.default_model`` with the seed's defaults, evaluate it
    (with saliency localisation and out-of-distribution refusals) on held-out phantoms from
    another seed and record that evaluation in its manifest."""
    from dxserve.cli import console as cli_console
    from dxserve.cli import echo_phantoms, run_evaluation, run_training

    console = console or cli_console
    root = settings.data_dir / "phantoms"
    train_dir, test_dir = root / "train", root / "test"
    console.print(f"preparing the demo echo model in {settings.repository} (first run only)")
    if not (train_dir / "manifest.csv").is_file():
        echo_phantoms(train_dir, TRAIN_STUDIES, TRAIN_SEED)
    if not (test_dir / "manifest.csv").is_file():
        echo_phantoms(test_dir, TEST_STUDIES, TEST_SEED)
    ref = run_training(train_dir, settings.repository, settings.default_model, 10, 32, 1e-3, 0, 1)
    run_evaluation(
        str(ref.path),
        test_dir,
        "all",
        1,
        settings.data_dir / f"roc-{ref.name}-v{ref.version}.png",
        record=True,
        explain=True,
    )


def prepare_ecg(settings: Settings, name: str, console: Console | None = None) -> None:
    """Generate ECG phantoms, train the RNN as ``name``, evaluate it (statements, calibration,
    lead II alone, interval errors) on held-out phantoms and record that in its manifest."""
    from dxserve.cli import console as cli_console
    from dxserve.cli import ecg_phantoms, run_signal_evaluation, run_training

    console = console or cli_console
    root = settings.data_dir / "phantoms-ecg"
    train_dir, test_dir = root / "train", root / "test"
    console.print(f"preparing the demo ECG model in {settings.repository} (first run only)")
    if not (train_dir / "manifest.csv").is_file():
        ecg_phantoms(train_dir, ECG_TRAIN_RECORDS, TRAIN_SEED, rate=ECG_TRAIN_RATE)
    if not (test_dir / "manifest.csv").is_file():
        ecg_phantoms(test_dir, ECG_TEST_RECORDS, TEST_SEED, rate=ECG_TEST_RATE)
    ref = run_training(train_dir, settings.repository, "ecg-rnn", None, 32, 1e-3, 0, 1)
    if name != ref.name:
        raise ValueError(f"the demo ECG model is ecg-rnn, not {name}")
    run_signal_evaluation(ref, test_dir, "all", record=True, quiet=False)
