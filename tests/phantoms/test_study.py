"""Phantom studies: deterministic, balanced, exact masks, class-independent global statistics."""

import numpy as np
import pytest
from scipy import stats
from scipy.ndimage import binary_dilation

from dxserve.phantoms import FINDINGS
from dxserve.phantoms.anatomy import BLOOD, FLUID, THROMBUS, random_heart, random_lesion, render
from dxserve.phantoms.speckle import sector_tables
from dxserve.phantoms.study import finding_for, make_study


def test_same_seed_same_pixels_other_seed_other_pixels() -> None:
    a, b, c = make_study(5, 3, 128), make_study(5, 3, 128), make_study(6, 3, 128)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.frames, c.frames)


def test_classes_are_balanced_and_cover_every_finding() -> None:
    findings = [finding_for(i) for i in range(60)]
    assert findings.count("normal") == 30
    assert {f: findings.count(f) for f in FINDINGS} == dict.fromkeys(FINDINGS, 10)


@pytest.mark.parametrize("index", range(12))
def test_masks_are_exact_and_inside_the_sector(index: int) -> None:
    study = make_study(1, index, 128)
    inside = sector_tables(128)[3]
    if study.finding == "normal":
        assert not study.mask.any()
        return
    assert study.mask.sum() > 20
    assert not (study.mask & ~inside).any()


def test_findings_look_like_what_they_are() -> None:
    """Effusion is dark fluid; a thrombus is brighter than the darkest quarter of its
    surroundings (the blood of the LV cavity it sits in)."""
    inside = sector_tables(256)[3]
    for index in range(1, 48, 2):
        study = make_study(4, index, 256)
        frame, mask = study.frames[0].astype(float), study.mask
        ring = binary_dilation(mask, iterations=6) & ~binary_dilation(mask, iterations=2) & inside
        if study.finding == "effusion":
            assert frame[mask].mean() < 0.7 * frame[ring].mean()
        elif study.finding == "thrombus":
            assert frame[mask].mean() > np.percentile(frame[ring], 25) + 30


def test_masks_are_exactly_the_finding_in_the_scene() -> None:
    for index in (1, 3, 5):
        study = make_study(8, index, 128)
        heart = random_heart(np.random.default_rng(0))
        lesion = random_lesion(study.finding, np.random.default_rng(1))
        echo, mask = render(heart, lesion, 128, np.ones((128, 128), dtype=np.float32))
        if study.finding == "effusion":
            assert np.all(echo[mask] == FLUID) and np.sum(echo == FLUID) == mask.sum()
        elif study.finding == "thrombus":
            assert np.allclose(echo[mask], THROMBUS) and np.all(echo[mask] > 100 * BLOOD)
        else:
            assert np.mean(echo[mask] == BLOOD) > 0.95  # the LV cavity (valve leaflets aside)


def test_global_statistics_do_not_reveal_the_class() -> None:
    """Mean and contrast inside the sector have the same distribution for both classes."""
    inside = sector_tables(128)[3]
    means: dict[str, list[float]] = {"normal": [], "abnormal": []}
    stds: dict[str, list[float]] = {"normal": [], "abnormal": []}
    for index in range(160):
        study = make_study(9, index, 128)
        values = study.frames[0][inside].astype(float)
        means[study.label].append(values.mean())
        stds[study.label].append(values.std())
    assert stats.ks_2samp(means["normal"], means["abnormal"]).pvalue > 0.01
    assert stats.ks_2samp(stds["normal"], stds["abnormal"]).pvalue > 0.01


def test_cine_heart_moves_but_speckle_persists() -> None:
    study = make_study(2, 0, 128, frames=6)
    assert study.frames.shape == (6, 128, 128)
    first, systole = study.frames[0].astype(float), study.frames[3].astype(float)
    assert np.abs(first - systole).mean() > 5
    assert np.corrcoef(first.ravel(), study.frames[1].astype(float).ravel())[0, 1] > 0.3


def test_an_atrial_mass_is_drawn_only_when_asked_for_and_looks_like_a_mass() -> None:
    assert "atrial_mass" not in {finding_for(i) for i in range(60)}  # the demo's data
    assert {finding_for(i, ("atrial_mass",)) for i in range(1, 20, 2)} == {"atrial_mass"}
    inside = sector_tables(256)[3]
    for index in range(1, 16, 2):
        study = make_study(4, index, 256, findings=("atrial_mass",))
        assert study.finding == "atrial_mass" and study.mask.sum() > 20
        assert not (study.mask & ~inside).any()
        frame, mask = study.frames[0].astype(float), study.mask
        ring = binary_dilation(mask, iterations=6) & ~binary_dilation(mask, iterations=2) & inside
        assert frame[mask].mean() > np.percentile(frame[ring], 25) + 30  # brighter than the LA
