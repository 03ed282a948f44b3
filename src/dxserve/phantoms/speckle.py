"""B-mode imaging of an echogenicity map by a convolution model, giving fully developed speckle.

Random scatterers, with variance proportional to the local echogenicity, are placed on a grid in
beam space (depth samples × beam angles). Convolving them with the transducer's point-spread
function — a Gaussian-windowed RF pulse along the beam and a Gaussian beam profile across it —
gives the RF lines; their envelope (magnitude of the analytic signal) has Rayleigh statistics in
homogeneous tissue. Depth-gain, log compression and scan conversion to a sector follow, as in a
scanner.
"""

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage, signal

# Transducer point-spread function, in beam-space samples.
PULSE_CYCLES_PER_SAMPLE = 0.22
AXIAL_SIGMA = 1.8
LATERAL_SIGMA = 0.9
# Myocardium's echo level below the top of the display, in dB.
REFERENCE_DB = 18.0


@dataclass(frozen=True)
class Sector:
    """A sector scan: apex at the top centre, ``depth`` and ``half_angle`` in normalised units."""

    size: int
    apex: tuple[float, float] = (0.5, 0.03)
    depth: float = 0.95
    half_angle: float = math.radians(37.0)

    @property
    def beams(self) -> int:
        return max(64, self.size // 2)

    @property
    def samples(self) -> int:
        return 2 * self.size

    @property
    def radius(self) -> float:
        return self.depth - self.apex[1]

    def beam_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (row, col) of every beam-space sample, shape ``(samples, beams)``."""
        r = np.linspace(0, self.radius, self.samples)[:, None]
        theta = np.linspace(-self.half_angle, self.half_angle, self.beams)[None, :]
        u = self.apex[0] + r * np.sin(theta)
        v = self.apex[1] + r * np.cos(theta)
        return v * self.size - 0.5, u * self.size - 0.5

    def pixel_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Beam-space coordinates (sample, beam) of every output pixel, and the in-sector mask."""
        axis = (np.arange(self.size) + 0.5) / self.size
        u, v = np.meshgrid(axis, axis)
        du, dv = u - self.apex[0], v - self.apex[1]
        r = np.hypot(du, dv)
        theta = np.arctan2(du, dv)
        inside = (r <= self.radius) & (np.abs(theta) <= self.half_angle) & (dv >= 0)
        sample = r / self.radius * (self.samples - 1)
        beam = (theta + self.half_angle) / (2 * self.half_angle) * (self.beams - 1)
        return sample, beam, inside


@cache
def sector_tables(size: int) -> tuple[Sector, np.ndarray, np.ndarray, np.ndarray]:
    """The sector of an output ``size`` with its two resampling grids, computed once per size."""
    sector = Sector(size)
    rows, cols = sector.beam_grid()
    sample, beam, inside = sector.pixel_grid()
    return sector, np.stack([rows, cols]), np.stack([sample, beam]), inside


@cache
def _psf() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(-int(4 * AXIAL_SIGMA), int(4 * AXIAL_SIGMA) + 1)
    axial = np.exp(-(t**2) / (2 * AXIAL_SIGMA**2)) * np.cos(
        2 * math.pi * PULSE_CYCLES_PER_SAMPLE * t
    )
    k = np.arange(-int(4 * LATERAL_SIGMA) - 1, int(4 * LATERAL_SIGMA) + 2)
    lateral = np.exp(-(k**2) / (2 * LATERAL_SIGMA**2))
    return axial / np.linalg.norm(axial), lateral / np.linalg.norm(lateral)


def envelope(power: np.ndarray, scatterers: np.ndarray) -> np.ndarray:
    """Speckle envelope of beam-space echogenicity ``power`` given unit-variance ``scatterers``."""
    axial, lateral = _psf()
    rf = ndimage.convolve1d(scatterers * np.sqrt(power), axial, axis=0, mode="constant")
    rf = ndimage.convolve1d(rf, lateral, axis=1, mode="constant")
    return np.abs(signal.hilbert(rf, axis=0)).astype(np.float32)


@dataclass(frozen=True)
class Display:
    """Scanner settings a sonographer turns: overall gain (dB), depth gain, dynamic range."""

    gain_db: float
    depth_gain_db: float
    dynamic_range_db: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Display":
        return cls(
            gain_db=float(rng.uniform(-4, 4)),
            depth_gain_db=float(rng.uniform(-8, 4)),
            dynamic_range_db=float(rng.uniform(45, 60)),
        )


def to_beam_space(echogenicity: np.ndarray) -> np.ndarray:
    """Sample a Cartesian echogenicity map along the sector's beams."""
    _, beam_grid, _, _ = sector_tables(echogenicity.shape[0])
    return ndimage.map_coordinates(echogenicity, beam_grid, order=1, mode="nearest")


def bmode(echogenicity: np.ndarray, scatterers: np.ndarray, display: Display) -> np.ndarray:
    """Image a square Cartesian echogenicity map: float B-mode in [0, 1], 0 outside the sector."""
    sector, _, pixel_grid, inside = sector_tables(echogenicity.shape[0])
    env = envelope(to_beam_space(echogenicity), scatterers)
    depth = np.linspace(0.0, 1.0, sector.samples, dtype=np.float32)[:, None]
    level_db = (
        20 * np.log10(env + 1e-6) - REFERENCE_DB + display.gain_db + display.depth_gain_db * depth
    )
    beam_image = np.clip(1.0 + level_db / display.dynamic_range_db, 0.0, 1.0)
    image = ndimage.map_coordinates(beam_image, pixel_grid, order=1, mode="constant")
    image[~inside] = 0.0
    return image.astype(np.float32)


def new_scatterers(size: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian scatterer amplitudes on the beam-space grid for an output ``size``."""
    sector = sector_tables(size)[0]
    return rng.standard_normal((sector.samples, sector.beams)).astype(np.float32)
