"""The scene of an apical four-chamber view: chambers, walls, valves, pericardium and findings.

Coordinates are normalised: ``u`` runs left → right and ``v`` top → bottom of the output image,
both in [0, 1]. The heart is drawn in its own frame (``x`` lateral, ``y`` along the long axis,
apex at negative ``y``) and placed in the image by a rotation, scale and shift. In this view the
left ventricle lies on the right of the screen, the atria at the bottom, the apex at the top.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

# Echogenicity: mean backscattered power of each tissue, relative to myocardium.
BLOOD = 0.001
MYOCARDIUM = 1.0
VALVE = 3.0
PERICARDIUM = 4.0
TISSUE = 0.22
FLUID = 0.0002
THROMBUS = 0.9

WALL_GAP = 0.004  # normal distance between myocardium and pericardium
PERICARDIUM_WIDTH = 0.012


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in the heart's frame: centre, semi-axes, rotation (radians)."""

    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0

    def contains(self, x: np.ndarray, y: np.ndarray, grow: float = 0.0) -> np.ndarray:
        """Boolean mask of points inside the ellipse enlarged by ``grow`` on each axis."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        return (xr / (self.ax + grow)) ** 2 + (yr / (self.ay + grow)) ** 2 <= 1.0

    def scaled(self, fx: float, fy: float) -> "Ellipse":
        return replace(self, ax=self.ax * fx, ay=self.ay * fy)


@dataclass(frozen=True)
class Heart:
    """Chamber cavities and wall thicknesses in the heart's frame, and its pose in the image."""

    lv: Ellipse
    rv: Ellipse
    la: Ellipse
    ra: Ellipse
    lv_wall: float
    rv_wall: float
    atrial_wall: float
    center: tuple[float, float]
    angle: float
    scale: float

    def at_phase(self, systole: float) -> "Heart":
        """The heart ``systole`` of the way (0 = end-diastole, 1 = end-systole) through its beat."""
        shrink = 1.0 - 0.14 * systole
        grow = 1.0 + 0.10 * systole
        return replace(
            self,
            lv=self.lv.scaled(shrink, 1.0 - 0.08 * systole),
            rv=self.rv.scaled(shrink, 1.0 - 0.06 * systole),
            la=self.la.scaled(grow, grow),
            ra=self.ra.scaled(grow, grow),
            lv_wall=self.lv_wall * (1.0 + 0.25 * systole),
        )


def random_heart(rng: np.random.Generator) -> Heart:
    """A normal heart with randomised size, shape and pose."""

    def jitter(low: float = 0.9, high: float = 1.1) -> float:
        return float(rng.uniform(low, high))

    return Heart(
        lv=Ellipse(0.085, -0.085, 0.072 * jitter(), 0.175 * jitter(), rng.uniform(-0.08, 0.08)),
        rv=Ellipse(-0.088, -0.05, 0.058 * jitter(), 0.13 * jitter(), rng.uniform(-0.1, 0.1)),
        la=Ellipse(0.08, 0.152, 0.068 * jitter(), 0.075 * jitter()),
        ra=Ellipse(-0.082, 0.158, 0.062 * jitter(), 0.075 * jitter()),
        lv_wall=0.026 * jitter(0.85, 1.15),
        rv_wall=0.018 * jitter(0.85, 1.15),
        atrial_wall=0.014,
        center=(0.49 + rng.uniform(-0.025, 0.025), 0.52 + rng.uniform(-0.03, 0.03)),
        angle=float(rng.uniform(-0.15, 0.15)),
        scale=1.12 * jitter(0.92, 1.08),
    )


@dataclass(frozen=True)
class Effusion:
    """Pericardial effusion: an anechoic crescent of ``thickness`` over ``span`` radians."""

    thickness: float
    direction: float
    span: float


@dataclass(frozen=True)
class Thrombus:
    """Apical LV thrombus: an echogenic mass on the LV wall ``position`` radians from the apex."""

    position: float
    radius: float
    aspect: float
    rotation: float


@dataclass(frozen=True)
class DilatedLV:
    """Dilated left ventricle: the LV cavity enlarged by these factors, its wall thinned."""

    lateral: float
    axial: float


@dataclass(frozen=True)
class AtrialMass:
    """Left atrial mass (a myxoma): an echogenic mass on the LA wall, ``position`` radians
    from the mitral side."""

    position: float
    radius: float
    aspect: float
    rotation: float


Lesion = Effusion | Thrombus | DilatedLV | AtrialMass


def random_lesion(finding: str, rng: np.random.Generator) -> Lesion:
    """A finding of the named kind with random size and position."""
    if finding == "effusion":
        return Effusion(
            thickness=float(rng.uniform(0.03, 0.06)),
            direction=float(rng.uniform(-math.pi, math.pi)),
            span=float(rng.uniform(1.6, 3.4)),
        )
    if finding == "thrombus":
        return Thrombus(
            position=float(rng.uniform(-0.9, 0.9)),
            radius=float(rng.uniform(0.026, 0.045)),
            aspect=float(rng.uniform(0.7, 1.3)),
            rotation=float(rng.uniform(0, math.pi)),
        )
    if finding == "dilated_lv":
        return DilatedLV(
            lateral=float(rng.uniform(1.32, 1.55)), axial=float(rng.uniform(1.1, 1.22))
        )
    if finding == "atrial_mass":
        return AtrialMass(
            position=float(rng.uniform(-1.2, 1.2)),
            radius=float(rng.uniform(0.05, 0.08)),
            aspect=float(rng.uniform(0.7, 1.3)),
            rotation=float(rng.uniform(0, math.pi)),
        )
    raise ValueError(f"unknown finding {finding!r}")


def with_lesion(heart: Heart, lesion: Lesion | None) -> Heart:
    """The heart's geometry as the lesion changes it (only a dilated LV changes geometry)."""
    if not isinstance(lesion, DilatedLV):
        return heart
    lv = heart.lv.scaled(lesion.lateral, lesion.axial)
    # Grow towards the lateral wall and the apex, keeping the septum and the mitral annulus.
    lv = replace(
        lv,
        cx=heart.lv.cx + (lv.ax - heart.lv.ax),
        cy=heart.lv.cy - (lv.ay - heart.lv.ay) * 0.6,
    )
    return replace(heart, lv=lv, lv_wall=heart.lv_wall * 0.8)


def render(
    heart: Heart, lesion: Lesion | None, size: int, texture: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity map (float32, ``size``²) and exact lesion mask (bool) of one frame.

    ``texture`` is a smooth field around 1 that modulates the surrounding tissue.
    """
    heart = with_lesion(heart, lesion)
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    u, v = np.meshgrid(axis, axis)
    c, s = math.cos(heart.angle), math.sin(heart.angle)
    du, dv = (u - heart.center[0]) / heart.scale, (v - heart.center[1]) / heart.scale
    x, y = c * du + s * dv, -s * du + c * dv

    chambers = [
        (heart.lv, heart.lv_wall),
        (heart.rv, heart.rv_wall),
        (heart.la, heart.atrial_wall),
        (heart.ra, heart.atrial_wall),
    ]
    cavity = np.zeros(u.shape, dtype=bool)
    outline = np.zeros(u.shape, dtype=bool)
    for chamber, wall in chambers:
        cavity |= chamber.contains(x, y)
        outline |= chamber.contains(x, y, grow=wall)
    outline = ndimage.binary_fill_holes(outline)

    # Distance outside the heart's outline, in normalised image units.
    outside = ndimage.distance_transform_edt(~outline) / size
    gap = np.full(u.shape, WALL_GAP, dtype=np.float32)
    mask = np.zeros(u.shape, dtype=bool)
    if isinstance(lesion, Effusion):
        bump = _crescent(np.arctan2(x, -y), lesion.direction, lesion.span)
        gap = (gap + lesion.thickness * bump).astype(np.float32)
        mask = (outside > 0) & (outside < gap) & (lesion.thickness * bump > 0.01)

    echo = (TISSUE * texture).astype(np.float32)
    shell = (outside >= gap) & (outside < gap + PERICARDIUM_WIDTH)
    echo[shell] = PERICARDIUM
    echo[(outside > 0) & (outside < gap)] = TISSUE * 0.5
    echo[mask] = FLUID
    echo[outline] = MYOCARDIUM * (0.7 + 0.3 * texture[outline])
    echo[cavity] = BLOOD
    for leaflet in _valve_leaflets(heart):
        echo[leaflet.contains(x, y)] = VALVE

    if isinstance(lesion, Thrombus):
        mass = _thrombus_shape(heart.lv, lesion).contains(x, y) & heart.lv.contains(x, y)
        echo[mass] = THROMBUS * (0.4 + 0.6 * texture[mass])
        mask = mass
    elif isinstance(lesion, AtrialMass):
        mass = _thrombus_shape(heart.la, lesion).contains(x, y) & heart.la.contains(x, y)
        echo[mass] = THROMBUS * (0.5 + 0.5 * texture[mass])
        mask = mass
    elif isinstance(lesion, DilatedLV):
        mask = heart.lv.contains(x, y)
    return echo, mask


def _crescent(angle: np.ndarray, direction: float, span: float) -> np.ndarray:
    """Smooth window over angles: 1 at ``direction``, tapering to 0 at ±``span``/2."""
    delta = np.angle(np.exp(1j * (angle - direction)))
    window = np.clip(1.0 - np.abs(delta) / (span / 2), 0.0, 1.0)
    return (np.sin(window * math.pi / 2) ** 2).astype(np.float32)


def _valve_leaflets(heart: Heart) -> list[Ellipse]:
    """Mitral and tricuspid leaflets hinged at the ventricular bases, opening into the ventricles."""
    leaflets = []
    for ventricle in (heart.lv, heart.rv):
        base_y = ventricle.cy + ventricle.ay * 0.93
        half = ventricle.ax * 0.5
        length = ventricle.ax * 0.45
        for side in (-1, 1):
            leaflets.append(
                Ellipse(
                    ventricle.cx + side * half * 0.8,
                    base_y - length * 0.75,
                    0.0075,
                    length,
                    angle=side * 0.45,
                )
            )
    return leaflets


def _thrombus_shape(lv: Ellipse, thrombus: Thrombus | AtrialMass) -> Ellipse:
    """The mass's ellipse: centred just inside the chamber's wall (the LV's: near the apex)."""
    point_x = lv.cx + lv.ax * math.sin(thrombus.position)
    point_y = lv.cy - lv.ay * math.cos(thrombus.position)
    inward_x, inward_y = lv.cx - point_x, lv.cy - point_y
    norm = math.hypot(inward_x, inward_y) or 1.0
    depth = thrombus.radius * 0.55
    return Ellipse(
        point_x + inward_x / norm * depth,
        point_y + inward_y / norm * depth,
        thrombus.radius * thrombus.aspect,
        thrombus.radius / thrombus.aspect,
        angle=thrombus.rotation,
    )


def tissue_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field with mean ≈ 1 (0.6 – 1.4) that varies tissue brightness."""
    coarse = ndimage.gaussian_filter(rng.standard_normal((16, 16)), 1.5)
    coarse /= coarse.std() + 1e-9
    field = ndimage.zoom(coarse, size / 16, order=3)[:size, :size]
    return np.clip(1.0 + 0.2 * field, 0.6, 1.4).astype(np.float32)
