"""The layer contracts in setup.cfg hold (import-linter), so that no module imports upward."""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


class LayerTests(TestCase):

    def test_import_contracts_are_kept(self):
        result = subprocess.run([LINT, "--config", os.path.join(ROOT, "setup.cfg")], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("0 broken", result.stdout)
