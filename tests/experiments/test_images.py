"""Image networks and training: shapes of Appendices D2/D3, parity across methods, one
step of every method on every image arch, kill-and-resume to identical weights, refused
resumes, the CPU fallbacks of the CUDA options, and replicate_digits end to end."""

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from iwgan.cli import main
from iwgan.core.methods import DEFAULT_METHODS, METHOD_NAMES, get_method
from iwgan.core.networks import INPUT_SHAPES, build_networks
from iwgan.data.datasets import ImageData, load_dataset
from iwgan.data.mnist_pickle import sha256_of
from iwgan.engine.config import IMAGE_PROFILES, make_image_config
from iwgan.engine.devices import check_device
from iwgan.engine.records import read_image_results
from iwgan.engine.trainer import ResumeError, Trainer, execution_plan
from iwgan.experiments.image_training import train_images
from iwgan.experiments.throughput import RandomImages
from tests.core.parity import assert_uses_shared_networks
from tests.data.test_mnist_pickle import write_pickle

IMAGE_ARCHS = ("mnist", "celeba")
Z = {"mnist": 8, "celeba": 64}


def tiny_config(arch, method, **kw):
    dataset = "digits" if arch == "mnist" else "celeba"
    return make_image_config(dataset, "smoke", method=method, width=0.05, batch_size=4,
                             **kw)


def snapshot(models):
    return {k: [p.detach().clone() for p in m.parameters()] for k, m in models.named().items()}


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_image_networks_have_the_appendix_d_shapes(arch):
    nets = build_networks(arch, 1.0, Z[arch])
    x = torch.rand(2, *INPUT_SHAPES[arch])
    assert nets.encoder(x).shape == (2, Z[arch])
    out = nets.generator(torch.randn(2, Z[arch]))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1  # sigmoid
    assert nets.critic(x).shape == (2, 1)
    convs = [m.out_channels for m in nets.critic if isinstance(m, nn.Conv2d)]
    assert convs == [128, 256, 512]
    assert isinstance(nets.critic[0], nn.Conv2d) and isinstance(nets.encoder[-1], nn.Linear)
    ups = [m.out_channels for m in nets.generator if isinstance(m, nn.ConvTranspose2d)]
    assert ups == ([256, 128, 1] if arch == "mnist" else [512, 256, 128, 3])


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_uses_the_shared_image_networks(arch, method):
    """Parity: Q, G and f of every method have the shapes of the shared definition."""
    for width in (1.0, 0.125):
        dataset = "digits" if arch == "mnist" else "celeba"
        cfg = make_image_config(dataset, "smoke", method=method, width=width)
        assert_uses_shared_networks(method, cfg)


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
@pytest.mark.parametrize("method,options", [(m, {}) for m in METHOD_NAMES])
def test_one_step_of_every_method_on_every_image_arch(arch, method, options):
    cfg = tiny_config(arch, method, options=options)
    trainer = Trainer([cfg], RandomImages(cfg.input_shape, "cpu"))
    models = trainer.members.member(0)
    before = snapshot(models)
    [logs] = trainer.run_iteration()
    assert set(logs) == set(get_method(method).logs)
    assert all(math.isfinite(v) for v in logs.values())
    after = snapshot(models)
    for name in before:
        assert any(not torch.equal(a, b) for a, b in zip(before[name], after[name])), name


def fake_faces(n=24):
    g = torch.Generator().manual_seed(0)
    return ImageData("celeba", "train", torch.randint(0, 256, (n, 3, 64, 64), generator=g,
                                                      dtype=torch.uint8), "random", "test")


def final_state(models):
    return models.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("arch,method", [("mnist", "iwgan"), ("celeba", "ali")])
def test_kill_and_resume_reaches_the_same_weights(arch, method, tmp_path):
    """A run stopped after 3 of 5 iterations (its last checkpoint, as a kill leaves it)
    and resumed ends with the very weights, Adam state and BN buffers of one that ran
    through."""
    data = load_dataset("digits", "train") if arch == "mnist" else fake_faces()
    cfg = tiny_config(arch, method, iterations=5, checkpoint_every=1, sample_every=2,
                      log_every=2)
    straight = train_images(cfg, data, tmp_path / "straight")
    killed = train_images(cfg, data, tmp_path / "killed", stop_after=3)
    assert killed.iterations == 3
    resumed = train_images(cfg, data, tmp_path / "killed", resume=True)
    assert resumed.resumed_from == 3 and resumed.iterations == 5
    assert_same_weights(final_state(straight.models), final_state(resumed.models))
    assert (straight.optimizer_state["critic"]["state"][0]["exp_avg"]
            .equal(resumed.optimizer_state["critic"]["state"][0]["exp_avg"]))
    def losses(run):
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
                for line in (tmp_path / run / "log.jsonl").open()]

    assert [r["iteration"] for r in losses("killed")] == [2, 4, 5]
    assert losses("killed") == losses("straight")
    assert (tmp_path / "killed" / "samples" / "iter_0000004.png").exists()
    # A fresh start from iteration 0 is not what resume does: it would differ.
    other = train_images(tiny_config(arch, method, iterations=5, seed=1, log_every=2), data,
                         tmp_path / "other")
    with pytest.raises(AssertionError):
        assert_same_weights(final_state(straight.models), final_state(other.models))


def test_resume_with_a_changed_config_is_refused_listing_the_keys(tmp_path):
    data = load_dataset("digits", "train")
    cfg = tiny_config("mnist", "wgan_gp", iterations=2, checkpoint_every=1)
    train_images(cfg, data, tmp_path / "run", stop_after=1)
    ckpt = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    changed = tiny_config("mnist", "wgan_gp", iterations=2, checkpoint_every=1, lr=1e-2,
                          n_critic=3)
    with pytest.raises(ResumeError) as err:
        train_images(changed, data, tmp_path / "run", resume=True)
    assert "lr (checkpoint 0.0005, now 0.01)" in str(err.value)
    assert "n_critic (checkpoint 1, now 3)" in str(err.value)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == ckpt  # untouched
    # Another budget is another run (its own run_id); resumed in this one's directory it
    # is refused too, rather than labelled with the wrong budget.
    longer = tiny_config("mnist", "wgan_gp", iterations=3, checkpoint_every=1)
    assert longer.run_id != cfg.run_id
    with pytest.raises(ResumeError, match=r"iterations \(checkpoint 2, now 3\)"):
        train_images(longer, data, tmp_path / "run", resume=True)


def test_cuda_options_fall_back_on_cpu_with_a_recorded_note():
    cfg = tiny_config("mnist", "iwgan", precision="bf16", channels_last=True)
    plan = execution_plan(cfg)
    assert plan["precision_used"] == "fp32" and plan["channels_last_used"] is False
    assert any("bf16" in n for n in plan["notes"]) and any("channels_last" in n
                                                           for n in plan["notes"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            check_device("cuda")


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown profile for celeba 'cpu'"):
        make_image_config("celeba", "cpu")
    with pytest.raises(ValueError, match="unknown config field"):
        make_image_config("digits", "smoke", widht=2)
    with pytest.raises(ValueError, match="unknown metric"):
        make_image_config("digits", "smoke", metric="is")


@pytest.mark.slow
def test_replicate_digits_end_to_end_then_resume_and_the_reports(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["images", "--dataset", "digits", "--profile", "smoke", "--out", str(out),
            "--cache-dir", str(cache)]
    assert main(args) == 0
    df = read_image_results(out / "results" / "images.csv")
    assert sorted(df.method) == sorted(DEFAULT_METHODS) and set(df.status) == {"finished"}
    assert set(df.fd_name) == {"FD-digitsCNN"} and df.fd.notna().all()
    assert "converged" in df and "| converged |" in (out / "reports" / "digits.md").read_text()
    assert df[df.method == "wgan_gp"].recon_error.isna().all()
    assert df[df.method == "wgan_gp"].latent_std.isna().all()
    assert (df[df.method != "wgan_gp"].latent_std > 0).all()   # smoke encoders not collapsed
    for run_id in df.run_id:
        assert (out / "results" / "images" / f"{run_id}.npz").exists()
        assert (out / "runs" / run_id / "checkpoint.pt").exists()
    report = (out / "reports" / "digits.md").read_text()
    assert "FD-digitsCNN" in report and "not a FID" in report and "| iwgan |" in report
    assert "| Q(x) std |" in report
    assert "not run: needs a GPU and CelebA" in (out / "reports" / "celeba.md").read_text()
    assert "69.28" in (out / "reports" / "celeba.md").read_text()
    figures = sorted(p.name for p in (out / "reports" / "figures").iterdir())
    assert {"images_digits_smoke_samples.png", "images_digits_smoke_quality.png",
            "images_digits_smoke_recon_hist.png"} <= set(figures)
    first = {p.name: p.read_bytes() for p in (out / "reports").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "0 runs" in capsys.readouterr().out
    assert main(["reports", "--out", str(out)]) == 0
    again = {p.name: p.read_bytes() for p in (out / "reports").rglob("*") if p.is_file()}
    # rebuilt from results/ alone, byte for byte; `reports` also writes the scorecard
    assert {k: again.get(k) for k in first} == first and set(again) - set(first) == {"README.md"}


def test_a_foreign_images_csv_is_refused_and_kept(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame([{"run_id": "x"}]).to_csv(results / "images.csv", index=False)
    before = (results / "images.csv").read_bytes()
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--out", str(tmp_path),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2 and "missing column" in capsys.readouterr().err
    assert (results / "images.csv").read_bytes() == before
    assert not (tmp_path / "runs").exists()


def test_the_cli_refuses_a_resume_under_a_changed_profile_before_writing(tmp_path, capsys,
                                                                          monkeypatch):
    data = load_dataset("digits", "train")
    cfg = make_image_config("digits", "smoke", method="iwgan")
    train_images(cfg, data, tmp_path / "runs" / cfg.run_id, stop_after=2)
    # The profile's values changed in the code since: same run_id, another config.
    monkeypatch.setitem(IMAGE_PROFILES["digits"]["smoke"], "batch_size", 8)
    rc = main(["images", "--dataset", "digits", "--profile", "smoke", "--methods", "iwgan",
               "--resume", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "batch_size (checkpoint 16, now 8)" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_replicate_mnist_end_to_end_on_a_tiny_pickle(tmp_path, capsys):
    """The MNIST path of the command on a pickle of the classic format (digits as the
    images): the metric's reference is the test split, its floor the validation split
    against it, and the rows and the report carry the source and its hash."""
    digits = {s: load_dataset("digits", s) for s in ("train", "validation")}
    x = {s: (d.images.reshape(len(d), 784).numpy() / 256).astype("float32")
         for s, d in digits.items()}
    y = {s: d.labels.numpy() for s, d in digits.items()}
    path = write_pickle(tmp_path / "mnist.pkl.gz",
                        ((x["train"], y["train"]), (x["validation"][:180], y["validation"][:180]),
                         (x["validation"][180:], y["validation"][180:])))
    out = tmp_path / "out"
    args = ["images", "--dataset", "mnist", "--profile", "smoke", "--source", "pickle",
            "--data-dir", str(path), "--methods", "iwgan", "wgan_gp", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--set", "iterations=4",
            "--set", "checkpoint_every=2", "--set", "classifier_steps=20"]
    assert main(args) == 0
    assert "validation vs test (real vs real)" in capsys.readouterr().out
    df = read_image_results(out / "results" / "images.csv")
    assert set(df.dataset) == {"mnist"} and set(df.fd_name) == {"FD-MNISTCNN"}
    assert set(df.fd_reference_split) == {"test"} and set(df.fd_reference_samples) == {180}
    assert set(df.data_sha256) == {sha256_of(path)}
    assert set(df.data_source) == {f"pickled MNIST {path}"}
    assert df.fd_real_validation.notna().all() and df.fd.notna().all()
    manifest = json.loads((out / "runs" / df.run_id[0] / "manifest.json").read_text())
    assert set(manifest["data"]) == {"train", "validation", "test"}
    assert manifest["data"]["test"]["source_sha256"] == sha256_of(path)
    report = (out / "reports" / "mnist.md").read_text()
    assert "FD-MNISTCNN" in report and "real test images" in report
    assert "| real vs real |" in report and "classifier test accuracy" in report
    assert f"sha256 {sha256_of(path)}" in report and "Figs 5a, 10" in report
