"""The demo model: the seed CNN trained on phantoms, prepared on first ``dxserve serve``."""

from rich.console import Console

from dxserve.settings import Settings

TRAIN_STUDIES = 3000
TEST_STUDIES = 600
TRAIN_SEED = 1
TEST_SEED = 2  # held-out phantoms from another seed


def prepare_demo_model(settings: Settings, console: Console | None = None) -> None:
    """Generate phantoms, train ``settings.default_model`` with the seed's defaults, evaluate it
    (with saliency localisation and out-of-distribution refusals) on held-out phantoms from
    another seed and record that evaluation in its manifest."""
    from dxserve.cli import console as cli_console
    from dxserve.cli import echo_phantoms, run_evaluation, run_training

    console = console or cli_console
    root = settings.data_dir / "phantoms"
    train_dir, test_dir = root / "train", root / "test"
    console.print(f"preparing the demo model in {settings.repository} (first run only)")
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
