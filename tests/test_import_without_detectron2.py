"""Without detectron2 the pure-torch parts import, and detectron2-only parts say how to install it."""
import subprocess
import sys

# Makes `import detectron2` fail in the child process, as on a machine without it.
_BLOCK = "import sys; sys.modules['detectron2'] = None\n"


def _run(code):
    return subprocess.run([sys.executable, "-c", _BLOCK + code], capture_output=True, text=True, timeout=120)


def test_pure_parts_import_without_detectron2():
    result = _run(
        "import d2imbalance, d2imbalance.data.shapes, d2imbalance.data.validation, d2imbalance.lr_scaling\n"
        "import resobj, scale_balanced, objconf\n"
        "import drloss, drloss.dr_loss\n"
        "import sampling_free, sampling_free.core\n"
        "import ghm, ghm.ghm_loss\n"
        "import aploss, aploss.ap_loss\n"
        "import iou_balanced, iou_balanced.sampling\n"
        "import ohem, ohem.selection\n"
        "import pisa, pisa.isr, pisa.carl\n"
        "print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_detectron2_parts_raise_an_import_error_with_install_instructions():
    result = _run(
        "try:\n"
        "    import d2imbalance.engine\n"
        "except ImportError as e:\n"
        "    print('MESSAGE', e)\n"
    )
    assert "MESSAGE" in result.stdout, result.stderr
    assert "needs detectron2" in result.stdout and "--no-build-isolation" in result.stdout
