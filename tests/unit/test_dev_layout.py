"""`make dev` finds the checkout it runs from: its CRDs, chart and examples.

corral_local.dev locates them from its own path; a wrong guess left `make
dev` printing "the platform runs alone" without the operator or the pool.
"""

from pathlib import Path

from corral_local import dev

CHECKOUT = Path(__file__).resolve().parents[2]


def test_dev_locates_this_checkout() -> None:
    assert dev.REPO == CHECKOUT


def test_what_make_dev_installs_is_where_dev_looks() -> None:
    assert sorted(p.name for p in (dev.REPO / "crds").glob("*.yaml")) == [
        "regions.corral.dev.yaml",
        "workerpools.corral.dev.yaml",
    ]
    assert (dev.REPO / "charts" / "corral" / "Chart.yaml").is_file()
    for example in ("region.yaml", "workerpool.yaml"):
        assert (dev.REPO / "examples" / example).is_file()


def test_make_dev_starts_the_dashboard_on_loopback_with_a_password_file() -> None:
    from click.testing import CliRunner

    from corral.cli import cli

    assert dev._corral_has("dashboard")
    argv = dev.dashboard_command("corral", 8099, "/k/config", Path("/s/pw"))
    assert argv[:2] == ["corral", "dashboard"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--password-file") + 1] == "/s/pw"
    # every flag it passes is one `corral dashboard` accepts
    help_text = CliRunner().invoke(cli, ["dashboard", "--help"]).output
    for flag in (a for a in argv if a.startswith("--")):
        assert flag in help_text
