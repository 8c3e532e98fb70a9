"""No test module imports another test module (tests/support/layout.py): shared code lives in tests/support."""
from __future__ import annotations

from pathlib import Path

from tests.support.layout import main, violations
from tests.support.tree import write_tree

ROOT = Path(__file__).resolve().parents[1]


def test_no_test_module_imports_another_one():
    assert (ROOT / "tests" / "support" / "configs.py").is_file()  # it looks at the real tree
    assert violations(ROOT) == []



def test_the_check_fails_on_imports_between_test_modules_and_on_stray_helpers(tmp_path, capsys):
    write_tree(tmp_path, {
        "tests/__init__.py": "",
        "tests/conftest.py": "def write_config(): ...\n",
        "tests/support/__init__.py": "",
        "tests/support/configs.py": "from tests.support.polling import wait_for\n",  # support may share
        "tests/a/__init__.py": "",
        "tests/a/conftest.py": "MSG = []\n",
        "tests/a/test_one.py": "from tests.support.configs import config_text\n"
                               "from tests.conftest import write_config\n",
        "tests/a/test_two.py": "def test():\n    from .test_one import helper  # hidden in a function, relative\n",
        "tests/a/test_three.py": "from . import conftest\nfrom tests.a import test_one\nfrom tests import conftest\n",
        "tests/a/prompts.py": "PROMPTS = []\n",
    })
    assert violations(tmp_path) == [
        "tests/a/test_one.py:2 imports tests.conftest",
        "tests/a/test_three.py:1 imports tests.a.conftest",
        "tests/a/test_three.py:2 imports tests.a.test_one",
        "tests/a/test_three.py:3 imports tests.conftest",
        "tests/a/test_two.py:2 imports tests.a.test_one",
        "tests/a/prompts.py is a helper module outside tests/support",
    ]
    assert main(tmp_path) == 1 and "tests/a/test_one.py:2 imports tests.conftest" in capsys.readouterr().out
