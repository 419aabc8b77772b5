"""The one config schema (``schema``: every key documented there), the Hugging Face configs built from it
(``hf``) and the shipped presets (``presets``)."""

from ethsft.config.schema import ConfigError, Settings, load_settings, notice

__all__ = ["ConfigError", "Settings", "load_settings", "notice"]
