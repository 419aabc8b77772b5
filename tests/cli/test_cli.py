"""The `ethsft` group: `ethsft --help` lists every command without importing the ML stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "deepspeed")


def test_help_imports_no_heavy_library():
    probe = ("import runpy, sys\n"
             "sys.argv = ['ethsft', '--help']\n"
             "try:\n    runpy.run_module('ethsft', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
             f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules), code)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "merge" in out.stdout
    assert out.stdout.splitlines()[-1] == "LOADED [] 0"
