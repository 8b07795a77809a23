"""The README's quick-start commands are the ones CI runs and point at files that exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    main_job, test_command = _quick_start_commands()
    assert "train_net.py --config-file" in main_job
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_main_job_config_exists():
    main_job, _ = _quick_start_commands()
    config = re.search(r"--config-file (\S+)", main_job).group(1)
    assert (ROOT / config).is_file()
