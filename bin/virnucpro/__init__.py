"""VirNucPro re-implemented as the Python core of a Nextflow pipeline.

Each executable in ``bin/`` is one pipeline process; this package holds what they share.
"""

__version__ = "0.1.0"
