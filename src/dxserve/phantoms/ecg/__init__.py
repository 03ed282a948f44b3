"""Synthetic 12-lead ECGs with exact ground truth: rhythms from per-beat RR series, waves from
a cardiac dipole, realistic noise at a recorded signal-to-noise ratio (``dxserve phantoms ecg``).
"""
