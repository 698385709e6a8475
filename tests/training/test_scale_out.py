"""Beyond one process: folds as Ray tasks, one fold over several processes with torchrun.

CPU float sums depend on the number of threads, so every run compared here
uses one thread per fold (``OMP_NUM_THREADS=1`` for subprocesses, a Ray task
with one CPU) and the comparisons are exact where the issue promises it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_says, digits_project, invoke, write_digits_pipeline
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.core.progress import make_progress
from cleaner.formats.embeddings import read_embeddings
from cleaner.training.data import EpochSampler
from cleaner.training.distributed import Dist, ShardedEpochSampler

pytestmark = pytest.mark.slow


def single_thread_env() -> dict[str, str]:
    return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


def cleaner_oof(*args: str, torchrun: int = 0) -> None:
    """``cleaner oof ARGS`` in a fresh single-threaded process (or N under torchrun)."""
    torch_run = ["torch.distributed.run", "--standalone", f"--nproc-per-node={torchrun}", "-m"]
    launcher = [sys.executable, "-m", *(torch_run if torchrun else [])]
    cmd = [*launcher, "cleaner", "oof", *args, "--quiet"]
    done = subprocess.run(cmd, env=single_thread_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits with 10% noise (half of them train rows) and a 3-fold, 2-epoch pipeline:
    ``root/p.toml``."""
    root = tmp_path_factory.mktemp("scale")
    digits_project(root, "--noise", "0.1", "--test-fraction", "0.5", epochs=2, image_size=16)
    return root


@pytest.fixture(scope="module")
def sequential(project: Path) -> Path:
    """The reference: every fold in one single-threaded process."""
    cleaner_oof(str(project / "p.toml"), "--out", str(project / "sequential"))
    return project / "sequential"


# --- Ray ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray instance with 2 CPUs for the module (started once: it takes seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_folds_give_the_sequential_oof(project: Path, sequential: Path, ray_local: Any) -> None:
    run = project / "ray"
    out = invoke(
        "oof", str(project / "p.toml"), "--out", str(run), "--backend", "ray",
        "--cpus-per-fold", "1",
    )  # fmt: skip
    assert_says(out, "fold 0: accuracy", "on Ray", "out-of-fold metrics")
    assert (run / "oof.csv").read_bytes() == (sequential / "oof.csv").read_bytes()
    np.testing.assert_array_equal(
        read_embeddings(run / "embeddings.npz").embeddings,
        read_embeddings(sequential / "embeddings.npz").embeddings,
    )


def flaky_fold(run_dir: str, k: int, cwd: str, threads: int) -> dict[str, Any]:
    """Fold 0 fails on its first attempt, fold 1 on every attempt; attempts are counted."""
    from cleaner.training.ray_folds import train_fold_task

    attempts = Path(run_dir) / f"attempts-{k}"
    with open(attempts, "a") as f:
        f.write("x")
    if k == 1 or (k == 0 and attempts.read_text() == "x"):
        raise RuntimeError(f"injected failure of fold {k}")
    return train_fold_task(run_dir, k, cwd, threads)


def test_failing_fold_is_retried_then_reported(
    project: Path, sequential: Path, ray_local: Any
) -> None:
    from cleaner.core.config import load_config
    from cleaner.training.pipeline import load_pipeline_data
    from cleaner.training.ray_folds import RayOptions, run_folds_on_ray
    from cleaner.training.run_plan import plan_run

    # Ray ships the task function by value: the workers cannot import this test module.
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    run = project / "flaky"
    pipeline = project / "p.toml"
    with make_progress(quiet=True) as progress:
        plan = plan_run(load_pipeline_data(load_config(pipeline), progress=progress), out=run)
        failed = run_folds_on_ray(
            plan,
            [0, 1, 2],
            RayOptions(cpus_per_fold=1),
            progress=progress,
            task_fn=flaky_fold,
        )
    assert list(failed) == [1] and "RuntimeError: injected failure of fold 1" in failed[1]
    # fold 0 succeeded on its retry, fold 1 was tried twice, fold 2 once
    assert [(run / f"attempts-{k}").read_text() for k in range(3)] == ["xx", "xx", "x"]
    assert plan.fold_done(0) and plan.fold_done(2) and not plan.fold_done(1)
    assert not (run / "oof.csv").exists()

    # The same command again trains only the missing fold, then merges.
    done = {k: (run / f"fold-{k}" / "oof.npz").stat().st_mtime_ns for k in (0, 2)}
    invoke("oof", str(pipeline), "--out", str(run), "--backend", "ray", "--cpus-per-fold", "1")
    assert {k: (run / f"fold-{k}" / "oof.npz").stat().st_mtime_ns for k in (0, 2)} == done
    assert (run / "oof.csv").read_bytes() == (sequential / "oof.csv").read_bytes()


def test_failed_folds_exit_non_zero_with_a_table(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleaner.training.oof
    from cleaner.core.errors import FoldsFailed

    def fail(*args: Any, **kwargs: Any) -> None:
        raise FoldsFailed("runs/x", {3: "RuntimeError: CUDA out of memory", 1: "OSError: gone"})

    monkeypatch.setattr(cleaner.training.oof, "run_oof", fail)
    result = CliRunner().invoke(app, ["oof", str(project / "p.toml"), "--backend", "ray"])
    assert result.exit_code == 1
    assert_says(
        result.output, "failed folds of runs/x", "CUDA out of memory", "run the same command"
    )
    assert result.output.index("OSError") < result.output.index("CUDA")  # by fold


def test_ray_resources_the_cluster_cannot_grant_are_refused(project: Path, ray_local: Any) -> None:
    from cleaner.training.ray_folds import RayOptions, fold_resources

    cluster = {"CPU": 2.0}
    assert fold_resources(RayOptions(), workers=0, device="auto", cluster=cluster) == (1, 0)
    assert fold_resources(RayOptions(), workers=4, device="auto", cluster={"CPU": 8, "GPU": 2}) == (
        4,
        1,
    )
    for options, message in (
        (RayOptions(cpus_per_fold=3), "the Ray cluster has 2 CPUs"),
        (RayOptions(gpus_per_fold=1), "the Ray cluster has 0 GPUs"),
        (RayOptions(gpus_per_fold=2), "torchrun"),
    ):
        with pytest.raises(InputError, match=message):
            fold_resources(options, workers=0, device="auto", cluster=cluster)
    result = CliRunner().invoke(
        app, ["oof", str(project / "p.toml"), "--backend", "ray", "--cpus-per-fold", "64",
              "--out", str(project / "refused")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert_says(result.output, "--cpus-per-fold 64: the Ray cluster has 2 CPUs")


def test_without_ray_the_error_says_how_to_install(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(
        app, ["oof", str(project / "p.toml"), "--backend", "ray", "--out", str(project / "no")]
    )
    assert result.exit_code == 2
    assert_says(result.output, "pip install 'cleaner[ray]'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["oof", "--backend", "spark"], "--backend 'spark': choose one of local, ray"),
        (["oof", "--gpus-per-fold", "1"], "need --backend ray"),
        (["retrain", "--backend", "ray"], "use it with --mode folds"),
        (["retrain", "--backend", "spark"], "--backend 'spark': choose one of local, ray"),
        # refused at once, not after ray.init's minutes of retries
        (["oof", "--backend", "ray", "--address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
        (["oof", "--backend", "ray", "--address", "ray://127.0.0.1:1"], "nothing answers at"),
        (["oof", "--backend", "ray", "--address", "headnode"], "expected HOST:PORT"),
    ],
)
def test_bad_backend_options(project: Path, args: list[str], message: str) -> None:
    command, *rest = args
    result = CliRunner().invoke(
        app, [command, str(project / "p.toml"), *rest, "--out", str(project / "bad")]
    )
    assert result.exit_code == 2, result.output
    assert_says(result.output, message)
    assert not (project / "bad").exists()


# --- torchrun -----------------------------------------------------------------------------


def test_sharded_sampler_splits_the_single_process_batches() -> None:
    """The ranks' batches of step i together are exactly the single process's batch i."""
    n, world, batch, seed, epoch = 103, 2, 8, 7, 3
    single = EpochSampler(n, seed=seed)
    single.set_epoch(epoch)
    order = [i for i, _ in single]
    assert sorted(order) == list(range(n))
    shards = []
    for rank in range(world):
        s = ShardedEpochSampler(n, seed=seed, d=Dist(rank, world, rank))
        s.set_epoch(epoch)
        items = list(s)
        assert {e for _, e in items} == {epoch} and len(items) == len(s) == 52
        shards.append([i for i, _ in items])
    padded = order + order[: 2 * 52 - n]
    for step in range(52 // (batch // world) + 1):
        lo, hi = step * batch // world, (step + 1) * batch // world
        together = sorted(x for shard in shards for x in shard[lo:hi])
        assert together == sorted(padded[step * batch : step * batch + len(together)])


def test_torchrun_two_processes_give_the_same_rows(project: Path) -> None:
    """2 gloo processes against 1: same files and rows; probabilities within tolerance.

    Tolerance: on the CPU each process normalises batch norm over its half of
    the batch (SyncBatchNorm is GPU-only), which moves probabilities a little;
    after 6 epochs on the digits the mean absolute difference is about 0.013.
    """
    pipeline = write_digits_pipeline(
        project, project / "digits.csv", epochs=6, image_size=16, name="p6.toml"
    )
    cleaner_oof(str(pipeline), "--out", str(project / "one"))
    cleaner_oof(str(pipeline), "--out", str(project / "two"), "--fold", "0", torchrun=2)
    cleaner_oof(str(pipeline), "--out", str(project / "two"), torchrun=2)  # folds 1, 2; merge

    one, two = (pd.read_csv(project / r / "oof.csv") for r in ("one", "two"))
    files = {p.relative_to(project / "one").as_posix() for p in (project / "one").rglob("*")}
    assert files == {
        p.relative_to(project / "two").as_posix() for p in (project / "two").rglob("*")
    }
    keys = ["sample_id", "fold", "label"]
    pd.testing.assert_frame_equal(one[keys], two[keys])
    cols = [c for c in one.columns if c.startswith("p:")]
    diff = np.abs(one[cols].to_numpy() - two[cols].to_numpy())
    assert diff.mean() < 0.03
    assert (one["pred"] == two["pred"]).mean() > 0.95
    emb_one, emb_two = (
        read_embeddings(project / "one" / "embeddings.npz").embeddings,
        read_embeddings(project / "two" / "embeddings.npz").embeddings,
    )
    assert emb_one.shape == emb_two.shape
    metrics = pd.read_json(project / "two" / "metrics.json", typ="series")
    assert {f["processes"] for f in metrics["folds"]} == {2}
    assert torch.load(project / "two" / "fold-0" / "model.pt", weights_only=True).keys() == (
        torch.load(project / "one" / "fold-0" / "model.pt", weights_only=True).keys()
    )
