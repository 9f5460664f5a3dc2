"""A checkout of slmtok in a folder named ``slmtok/`` imports as the real package from its parent folder.

Python puts the current folder (and Ray the driver's working folder, in its workers) first on
``sys.path``. Run from the folder that holds a checkout named ``slmtok/``, ``import slmtok`` finds the
checkout before the installed package; without this file it would be an empty namespace package
(``slmtok.load`` missing, ``No module named 'slmtok.cli'``). This file makes the checkout the package as
``pyproject.toml``'s package-dir lays it out: the core from ``slmtok/`` and the mapped sub-packages
(``tokenizers/`` -> ``slmtok.tokenizers``, ``codecs/``, ``vocoders/``, ``hub/``) from this folder.

It is not part of any wheel or editable install (``packages`` names ``slmtok/`` as the package), and under
any other import name it does nothing.
"""

from pathlib import Path as _Path

if __name__ == "slmtok":
    _here = _Path(__file__).resolve().parent
    # the core first, then this folder for the mapped sub-packages (slmtok/ holds none of their names)
    __path__ = [str(_here / "slmtok"), str(_here)]
    __file__ = str(_here / "slmtok" / "__init__.py")
    exec(compile(_Path(__file__).read_bytes(), __file__, "exec"))  # the core package's own __init__
