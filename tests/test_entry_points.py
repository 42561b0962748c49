"""Entry-point plugins as installed distributions, discovered in a fresh interpreter."""

from pathlib import Path

from conftest import run_cli

GOOD_PLUGIN = """
import peft
from peftbench import PeftMethod, hookimpl


class MyRsLora(PeftMethod):
    name = "my_rslora"
    description = "LoRA with rank-stabilised scaling."
    defaults = {"r": 4}

    def peft_config(self, model, task, **hp):
        return peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=hp["r"], use_rslora=True)


@hookimpl
def register_methods(register):
    register(MyRsLora())
"""


def install_fake_distribution(site: Path, dist: str, version: str, entry: str, module: str, source: str):
    """What pip leaves behind: a module and a dist-info folder declaring the entry point."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[peftbench]\n{entry} = {module}\n")


def test_installed_entry_point_is_discovered_with_its_distribution(tmp_path):
    install_fake_distribution(
        tmp_path / "site", "peftbench-my-rslora", "1.2.3", "my_rslora", "pb_my_rslora", GOOD_PLUGIN
    )
    result = run_cli("methods", env={"PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 0, result.stderr
    assert "my_rslora  (peftbench-my-rslora 1.2.3)" in result.stdout
    assert "defaults: learning_rate=0.0005, weight_decay=0.0, warmup_ratio=0.06, r=4" in result.stdout


def test_a_plugin_that_fails_to_import_is_named_and_skipped(tmp_path):
    site = tmp_path / "site"
    install_fake_distribution(
        site, "peftbench-broken", "0.9", "broken", "pb_broken", "import no_such_module_xyz\n"
    )
    install_fake_distribution(site, "peftbench-my-rslora", "1.2.3", "my_rslora", "pb_my_rslora", GOOD_PLUGIN)
    result = run_cli("methods", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0
    assert (
        "peftbench: warning: peftbench plugin 'broken' from peftbench-broken 0.9 failed to load"
        in result.stderr
    )
    assert "No module named 'no_such_module_xyz'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "my_rslora  (peftbench-my-rslora 1.2.3)" in result.stdout and "lora (default)" in result.stdout


def test_environment_variable_limits_which_plugins_load(tmp_path):
    site = tmp_path / "site"
    install_fake_distribution(
        site, "peftbench-broken", "0.9", "broken", "pb_broken", "raise RuntimeError('x')\n"
    )
    install_fake_distribution(site, "peftbench-my-rslora", "1.2.3", "my_rslora", "pb_my_rslora", GOOD_PLUGIN)
    only = run_cli("methods", env={"PYTHONPATH": str(site), "PEFTBENCH_PLUGINS": "my_rslora"})
    assert "my_rslora  (" in only.stdout and "broken" not in only.stderr
    assert "dora  (" not in only.stdout  # the example plugins' entry points are not loaded either
    none = run_cli("methods", env={"PYTHONPATH": str(site), "PEFTBENCH_PLUGINS": ""})
    assert "my_rslora" not in none.stdout and "broken" not in none.stderr
    assert "lora (default)" in none.stdout and "prefix_tuning" in none.stdout
