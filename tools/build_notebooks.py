"""Execute the tutorials (jupytext scripts in notebooks/) into notebooks with their outputs.

    python tools/build_notebooks.py                 # all, full settings -> out/notebooks/
    python tools/build_notebooks.py --small sobol   # one, at the test suite's small settings

Each ``notebooks/<name>.py`` runs top to bottom in a real Jupyter kernel (nbclient, the kernel's
own inline backend, so figures are embedded) and is written as ``<out>/<name>.ipynb`` and, when
nbconvert is installed (the ``notebook`` extra), ``<out>/<name>.html``. ``make notebooks`` calls
this; the test suite runs :func:`execute` at small settings.
"""

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.py")))


def execute(path: str, *, small: bool, timeout: int = 1800):
    """The executed notebook of the jupytext script ``path`` (raises on any failing cell)."""
    import jupytext
    import nbclient

    env = {"XJAX_NOTEBOOK_SMALL": "1" if small else "0", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    saved = {k: os.environ.get(k) for k in (*env, "MPLBACKEND")}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)               # the kernel's own (inline) backend
    try:
        nb = jupytext.read(path)
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": ROOT}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorials to run (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "notebooks"))
    parser.add_argument("--small", action="store_true", help="the test suite's small settings")
    args = parser.parse_args(argv)
    known = {os.path.splitext(os.path.basename(p))[0]: p for p in NOTEBOOKS}
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown tutorial(s) {unknown}; choose from {sorted(known)}")
    import jupytext

    try:
        from nbconvert import HTMLExporter
    except ImportError:
        HTMLExporter = None
        print("nbconvert not installed (pip install -e '.[notebook]'): .ipynb only",
              file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    for name in args.names or sorted(known):
        print(f"running {name} ...", flush=True)
        nb = execute(known[name], small=args.small)
        jupytext.write(nb, os.path.join(args.out, f"{name}.ipynb"))
        if HTMLExporter is not None:
            html, _ = HTMLExporter().from_notebook_node(nb)
            with open(os.path.join(args.out, f"{name}.html"), "w", encoding="utf-8") as f:
                f.write(html)
        print(f"  {os.path.join(args.out, name)}.ipynb", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
