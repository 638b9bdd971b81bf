"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert len(ci) == 1
    blocks = _bash_blocks(readme)
    assert ci[0] in blocks, "README must show .ci/run's command as its own code block"
    assert ci[0].endswith("-m pytest")


def test_readme_main_command_runs_the_default_scenario():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main = blocks[0]
    assert main.startswith("python3 -m venv .venv") and main.endswith("-m scenarios.ieee33_day")
    assert (ROOT / "scenarios/ieee33_day.py").exists()
