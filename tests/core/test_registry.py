"""Methods found by name (built-in, installed entry point, module path), typed options
checked once, and run identities that a setting a method does not read cannot change."""

import textwrap

import pytest

from iwgan.cli import main
from iwgan.core.methods import DEFAULT_METHODS, METHOD_NAMES, get_method
from iwgan.engine.config import make_config, make_image_config

MINIMAL = '''
from iwgan.core.methods import Models, Option, Phase
from iwgan.core.networks import build_networks

HAS_ENCODER = False
OPTIONS = {"scale": Option(1.0, minimum=0.0)}
LOGS = ("loss",)


def build(cfg):
    nets = build_networks(cfg.arch, cfg.width, cfg.z_dim)
    return Models(generator=nets.generator, critic=nets.critic,
                  optimized={"generator": ("generator",)})


def phases(cfg):
    return [Phase(loss, "generator", 1)]


def loss(m, x, z, cfg, noise):
    value = cfg.method_options["scale"] * (m.generator(z) - x).pow(2).mean()
    return value, {"loss": value}
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Write a method package on the path; returns a writer of modules in it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    get_method.cache_clear()
    yield lambda name, text: (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    get_method.cache_clear()


def entry_point(tmp_path, name: str, target: str) -> None:
    """Install an entry point as pip would, in a distribution's metadata on the path."""
    info = tmp_path / "somepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: somepkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[iwgan_bench.methods]\n{name} = {target}\n")


def test_the_built_ins_are_found_by_name_in_the_papers_order():
    assert METHOD_NAMES == ("iwgan", "wgan_gp", "gan", "ali", "bigan", "alpha_gan")
    assert DEFAULT_METHODS == ("iwgan", "wgan_gp", "ali", "alpha_gan")
    for name in METHOD_NAMES:
        method = get_method(name)
        assert method.name == name and method.origin == "built-in"
    assert get_method("iwgan").has_encoder and not get_method("wgan_gp").has_encoder


def test_a_module_path_and_an_installed_entry_point_find_a_method(plugin, tmp_path):
    plugin("tiny_method_a", MINIMAL)
    method = get_method("tiny_method_a")
    assert method.origin == "module path" and method.logs == ("loss",)
    assert method.uses == () and method.images is False and method.duality_gap is None
    entry_point(tmp_path, "short_name", "tiny_method_a")
    assert get_method("short_name").module is method.module
    assert get_method("short_name").origin.startswith("entry point")
    cfg = make_config("tiny", method="short_name")
    assert cfg.run_id == "tiny-paper-ring-short_name-seed0"


def test_an_unknown_name_is_one_line_naming_where_it_was_looked_for():
    with pytest.raises(ValueError) as err:
        get_method("vae")
    text = str(err.value)
    assert "\n" not in text and text.startswith("unknown method 'vae'")
    assert "iwgan, wgan_gp, gan, ali, bigan, alpha_gan" in text and "module path" in text
    with pytest.raises(ValueError, match="unknown method 'no_such_pkg.method'"):
        get_method("no_such_pkg.method")
    with pytest.raises(ValueError, match="unknown method"):
        make_config("tiny", method="vae")


def test_a_module_lacking_part_of_the_interface_is_refused_naming_what(plugin):
    plugin("tiny_method_b", MINIMAL.replace("def phases(cfg)", "def not_phases(cfg)")
           .replace('LOGS = ("loss",)', 'LOGS = "loss"'))
    with pytest.raises(ValueError) as err:
        get_method("tiny_method_b")
    text = str(err.value)
    assert "lacks phases" in text and "LOGS must be a non-empty tuple" in text
    assert "docs/add-a-method.md" in text and "\n" not in text
    plugin("tiny_method_c", MINIMAL.replace('Option(1.0, minimum=0.0)', '1.0'))
    with pytest.raises(ValueError, match="OPTIONS must be a dict of name -> Option"):
        get_method("tiny_method_c")


def test_a_module_that_fails_to_import_says_so(plugin):
    plugin("tiny_method_d", "import not_a_dependency_anywhere\n" + MINIMAL)
    with pytest.raises(ValueError, match="'tiny_method_d' failed to import: No module named "
                                         "'not_a_dependency_anywhere'"):
        get_method("tiny_method_d")
    plugin("tiny_method_e", "raise RuntimeError('broken at import')\n")
    with pytest.raises(ValueError, match="failed to import: RuntimeError: broken at import"):
        get_method("tiny_method_e")


@pytest.mark.parametrize(("options", "message"), [
    ({"lambda_rec": "big"}, "option 'lambda_rec' takes a float, got 'big' (str)"),
    ({"lambda_rec": True}, "option 'lambda_rec' takes a float, got True (bool)"),
    ({"lambda_rec": -1.0}, "option 'lambda_rec' must be at least 0"),
    ({"adversarial_loss": "hinge"}, "'adversarial_loss' must be one of 'density_ratio', "
                                    "'non_saturating', got 'hinge'"),
    ({"encoder": "stochastic"}, "method 'alpha_gan' has no option 'encoder'; its options: "
                                "lambda_rec, adversarial_loss"),
])
def test_an_option_of_the_wrong_type_or_value_or_that_the_method_lacks_is_refused(
        options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("tiny", method="alpha_gan", options=options)


def test_options_are_typed_resolved_once_and_a_default_is_no_other_run():
    plain = make_config("tiny", method="alpha_gan")
    assert plain.method_options == {"lambda_rec": 1.0, "adversarial_loss": "density_ratio"}
    explicit = make_config("tiny", method="alpha_gan", options={"lambda_rec": 1})
    assert explicit.options == {} and explicit.run_id == plain.run_id
    assert explicit.hash() == plain.hash()
    other = make_config("tiny", method="alpha_gan", options={"lambda_rec": 2})
    assert other.options == {"lambda_rec": 2.0} and other.run_id != plain.run_id
    assert other.method_options["lambda_rec"] == 2.0


@pytest.mark.parametrize("method", ["gan", "ali", "bigan", "alpha_gan"])
def test_n_critic_does_not_change_a_run_of_a_method_without_a_critic_loop(method):
    plain = make_config("quick", method=method)
    asked = make_config("quick", method=method, n_critic=7)
    assert asked.n_critic == plain.n_critic == 2   # the profile's
    assert (asked.run_id, asked.hash(), asked.cell_key()) == \
        (plain.run_id, plain.hash(), plain.cell_key())
    image = make_image_config("digits", "cpu", method=method, n_critic=7)
    assert image.run_id == make_image_config("digits", "cpu", method=method).run_id


def test_the_shared_settings_a_method_reads_still_name_its_runs():
    for method in ("iwgan", "wgan_gp"):
        assert make_config("quick", method=method, n_critic=7).run_id != \
            make_config("quick", method=method).run_id
    assert make_config("quick", method="iwgan", lambda_mmd=1.0).overrides() == \
        {"lambda_mmd": 1.0}
    assert make_config("quick", method="wgan_gp", lambda_mmd=1.0).run_id == \
        make_config("quick", method="wgan_gp").run_id
    assert get_method("iwgan").uses == ("n_critic", "lambda_mmd")
    assert get_method("wgan_gp").uses == ("n_critic",)
    assert all(get_method(m).uses == () for m in ("gan", "ali", "bigan", "alpha_gan"))


def test_a_method_that_does_not_train_on_images_is_refused_for_images(plugin):
    plugin("tiny_method_f", MINIMAL)
    make_config("tiny", method="tiny_method_f")             # points: fine
    with pytest.raises(ValueError, match="'tiny_method_f' does not train on images"):
        make_image_config("digits", "smoke", method="tiny_method_f")


def test_the_stopping_rule_needs_the_logs_it_reads():
    with pytest.raises(ValueError, match="'wgan_gp' cannot use stop_rule: .* dual_gap and "
                                         "objective_L"):
        make_config("tiny", method="wgan_gp", stop_rule=True)


@pytest.mark.parametrize("args, message", [
    (["mode-coverage", "--methods", "alpha_gan", "--set", 'options={"lambda_rec": "big"}'],
     "error: method 'alpha_gan' option 'lambda_rec' takes a float, got 'big' (str)"),
    (["mode-coverage", "--methods", "wgan_gp", "--set", 'options={"encoder": "stochastic"}'],
     "error: method 'wgan_gp' has no option 'encoder'"),
    (["images", "--dataset", "digits", "--methods", "tiny_method_g"],
     "error: method 'tiny_method_g' does not train on images"),
    (["convergence", "--methods", "tiny_method_g"],
     "error: method 'tiny_method_g' has no duality gap"),
])
def test_bad_method_input_on_the_command_line_is_one_line_exit_2_and_nothing_written(
        plugin, tmp_path, capsys, args, message):
    plugin("tiny_method_g", MINIMAL)
    out = tmp_path / "out"
    assert main([*args, "--profile", "smoke" if args[0] == "images" else "tiny",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not out.exists()
