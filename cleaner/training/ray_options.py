"""Where Ray runs folds: ``--backend ray``, ``--address``, ``--gpus-per-fold``, ``--cpus-per-fold``.

Light on purpose (no torch, no Ray): the CLI and the API check these options
before anything heavy loads; :mod:`cleaner.training.ray_folds` uses them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from cleaner.core.errors import InputError


@dataclass(frozen=True)
class RayOptions:
    """How folds are spread: where Ray runs and what each fold asks of it."""

    address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); None: local
    cpus_per_fold: float | None = None  # default: max(1, train.workers)
    gpus_per_fold: float | None = None  # default: 1 when the cluster has GPUs and device allows
    num_cpus: int | None = None  # CPUs of the local instance (default: all)


def ray_options(
    backend: str, address: str | None, gpus: float | None, cpus: float | None
) -> RayOptions | None:
    """The RayOptions of the command line (and the API's same parameters); the Ray
    options without ``backend="ray"`` are refused."""
    if backend != "ray":
        if address is not None or gpus is not None or cpus is not None:
            raise InputError("--address, --gpus-per-fold and --cpus-per-fold need --backend ray")
        return None
    if address is not None:
        check_reachable(address)
    return RayOptions(address=address, gpus_per_fold=gpus, cpus_per_fold=cpus)


def check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """Refuse a Ray address nothing answers at, at once, rather than after
    ``ray.init``'s minutes of retries. ``auto`` and ``local`` are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(
            f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto "
            "(e.g. 10.0.0.5:6379, the address `ray start --head` prints)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(
            f"--address {address}: nothing answers at {host}:{port} ({e.strerror or e}); "
            "is the Ray head running there (`ray start --head`) and the port open?"
        ) from None
