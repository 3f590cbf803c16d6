"""Denoising methods: each is a frozen config plus ``fit_predict(slices, config, ...)``."""
