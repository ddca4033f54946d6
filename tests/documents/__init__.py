"""Tests of workflow.documents (the official PDF renderer)."""

import warnings

with warnings.catch_warnings():
    # WeasyPrint warns at import time, with a DeprecationWarning that the
    # project's ``filterwarnings = error`` would turn into a collection error,
    # when libharfbuzz-subset0 is missing.  Rendering still works (through the
    # slower fontTools subsetter), so the tests should run and say so there.
    warnings.filterwarnings("ignore", "HarfBuzz-Subset will be required", DeprecationWarning)
    import weasyprint  # noqa: F401
