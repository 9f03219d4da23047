"""Study presets for ``inrlens reproduce --preset NAME`` (TOML files; copy one and pass its path to edit it)."""
