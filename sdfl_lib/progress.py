"""Progress bars: one live widget per loop in Jupyter, plain text where the output is a terminal.

`sdfl study` sets `SDFL_PROGRESS=text` for its kernels, so the bars reach its terminal as text
(the rendered reports leave them out); in Jupyter or Colab with ipywidgets the bars are widgets.
Without ipywidgets, text bars, never tqdm's "IProgress not found" warning.
"""

from __future__ import annotations

import importlib.util
import os

PROGRESS_ENV = "SDFL_PROGRESS"

if os.environ.get(PROGRESS_ENV) == "text" or importlib.util.find_spec("ipywidgets") is None:
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["PROGRESS_ENV", "tqdm"]
