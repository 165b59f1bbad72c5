"""The command layer shared by both front ends: each function takes a `Ctx` and keyword arguments, calls the
library and returns an `output.Result`. The argparse front end (`cli.py`) and the invoke tasks (`tasks/`) only
map their arguments onto these functions."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .. import config as config_mod


@dataclass
class Ctx:
    config_path: str | None = None
    json: bool = False
    debug: bool = False
    warnings: list[str] = field(default_factory=list)
    _config: config_mod.RouterConfig | None = None

    @property
    def config(self) -> config_mod.RouterConfig:
        """The validated config, loaded on first use; its migration warnings are collected once."""
        if self._config is None:
            self._config = config_mod.load(self.config_path)
            self.warnings.extend(self._config.warnings)
        return self._config

    @property
    def interactive(self) -> bool:
        return not self.json and sys.stdout.isatty()
