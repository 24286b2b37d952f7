"""Cartesian reconstruction: GRAPPA, CG-SENSE, partial Fourier, readout oversampling."""
