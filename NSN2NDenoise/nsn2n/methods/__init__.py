"""Denoising methods: each is a frozen config plus ``fit_predict(slices, config, ...)``."""


def preset_config(config_class, presets, preset, overrides):
    """``config_class`` built from ``presets[preset]`` with the non-None ``overrides``."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_class(**values)
