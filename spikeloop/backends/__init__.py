"""Backends that run a chip instance: one run protocol, three implementations,
and :func:`run`, the one place that picks them.

- ``reference``: the composed cycle-accurate references of model/digital/ (pure
  Python, one cycle at a time) with the analog model: the golden model.
- ``cosim``: the RTL in Verilator or Icarus under cocotb, with the same analog
  model in the loop (:mod:`spikeloop.cosim`).
- ``fast``: a batched emulator (:mod:`spikeloop.backends.fast`): the analog side
  in torch for all samples of a batch at once, the digital side in compiled
  loops (:mod:`spikeloop.backends.digital_core`) that skip every cycle with
  nothing in flight.

For the same chip instance, ConfigImage, input events and run seed they return
identical Observables (:mod:`spikeloop.base.events`); every one follows the run
protocol of :mod:`spikeloop.base.protocol`.

The co-simulation (and with it Amaranth, cocotb and a simulator) is loaded only
when a run asks for it: training, experiments and the fast backend never load
it.

    from spikeloop import backends
    obs = backends.run(chip, image, events, n_steps, backend="fast", run_seed=1)
"""
from __future__ import annotations

from spikeloop.backends.devices import check_device
from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.protocol import check_run
from spikeloop.model.chip import Chip

#: the backends that run a chip instance
CHIP_BACKENDS = ("reference", "cosim", "fast")


def check_backend(name: str) -> str:
    if name not in CHIP_BACKENDS:
        raise ValueError(f"backend {name!r} is not allowed; allowed: "
                         f"{', '.join(CHIP_BACKENDS)}")
    return name


def check_backend_device(backend: str, device):
    """:func:`~spikeloop.backends.devices.check_device` for ``backend``: only the
    fast backend runs on another device than the cpu."""
    if str(device) != "cpu" and backend != "fast":
        raise ValueError(f"device = {str(device)!r}: only the fast backend runs on a torch "
                         f"device (backend {backend!r}: allowed cpu)")
    return check_device(device)


def run(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
        backend: str = "reference", run_seed: int = 0, sample_offset: int = 0,
        **options) -> Observables:
    """Run a batch of samples on the chip instance ``chip`` with the backend
    named ``backend``; ``options`` are that backend's own (``ppu``, ``device``
    for fast, ``simulator``/``waves`` for cosim).

    Refused before any backend starts (:func:`~spikeloop.base.protocol.check_run`,
    the same for all three): more steps than the cycle counter can count, a run
    whose results could exceed the memory bound, a negative seed or offset, and
    input events released after the run's last running cycle (they would never
    be played, so nothing is lost silently)."""
    check_backend(backend)
    if events.cfg != chip.cfg:
        raise ValueError(f"events are for chip config {events.cfg.name!r}, chip is "
                         f"{chip.cfg.name!r}")
    check_run(chip.cfg, n_steps, events.batch, events.table[:, 1], run_seed=run_seed,
              sample_offset=sample_offset)
    if backend == "cosim":
        from spikeloop.cosim.backend import run_cosim as run_backend  # at simulation time
    else:
        run_backend = run_fast if backend == "fast" else run_reference
    if image.cfg != chip.cfg:
        raise ValueError(f"image is for preset {image.cfg.name!r}, chip is {chip.cfg.name!r}")
    return run_backend(chip, image, events, n_steps, run_seed=run_seed,
                       sample_offset=sample_offset, **options)
