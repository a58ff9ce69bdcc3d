"""The analog side of a run, shared by every backend: one piece of code, so the
backends agree bit for bit (docs/architecture.md, "The emulation contract")."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import torch

from spikeloop.base.image import ConfigImage
from spikeloop.model.adc import adc_convert
from spikeloop.model.analog import _kernel_params, lif_step
from spikeloop.model.chip import Chip
from spikeloop.model.noise import membrane_noise, membrane_noise_steps


class AnalogLoop:
    """State of all neurons of ``len(sample_idx)`` samples, advanced one analog
    step at a time from the integer weight sums the digital side delivers."""

    def __init__(self, chip: Chip, image: ConfigImage, sample_idx, run_seed: int, *,
                 dtype=torch.float32, device="cpu"):
        self.params = chip.lif_params(image, dtype=dtype, device=device)
        self.adc = chip.analog.adc_params(dtype=dtype, device=device)
        self.sample_idx = torch.as_tensor(sample_idx, dtype=torch.int64, device=device)
        self.run_seed = int(run_seed)
        self.state = self.params.initial_state(len(self.sample_idx))
        self.step_index = 0
        # noise computed ahead for steps [_noise_lo, _noise_lo + len(_noise)) (see
        # plan_steps); None: one step at a time
        self._noise_ahead = 0
        self._noise_end = 0
        self._noise_lo = 0
        self._noise = None
        #: the neurons whose noise the planned path computes (None: all); a merged
        #: pair's bottom circuit is left out: lif_step gives it the top's membrane
        bottom = self.params.merge_bottom
        self.noise_neurons = (None if bottom is None or not bool(bottom.any()) else
                               torch.nonzero(~bottom).reshape(-1).cpu().numpy())

    def plan_steps(self, n_steps: int, *, elements: int = 1 << 15,
                   prefetch: bool | None = None) -> None:
        """Optional hint: steps ``step_index .. n_steps-1`` will follow.  The noise
        is then computed for several steps at once (about ``elements`` numbers a
        call), which is faster for small batches; the numbers are the same bits
        (``membrane_noise_steps``).  ``prefetch``: compute the next steps' noise
        on a second thread (:func:`noise_thread`) while these steps run (the noise
        depends on nothing the steps compute; its compiled loops release the GIL);
        None: on the CPU, whose noise is computed beside the steps (on CUDA the
        GPU computes it, queued behind the steps)."""
        per_step = max(1, len(self.sample_idx) * self.params.n_neurons)
        self._noise_ahead = max(1, elements // per_step)
        self._noise_end = int(n_steps)
        #: the first chunks are short (nothing runs beside the first; each next one
        #: is computed while the steps before it run): 1/8 of ``elements``, then
        #: as many steps as are done, up to ``elements``
        self._noise_first = self.step_index
        self._noise = None
        if prefetch is None:
            prefetch = self.params.device.type == "cpu"
        self._prefetch = (prefetch and self._noise_ahead > 1
                          and self.params.noise_step_v is not None)
        #: (first step, future) of the noise being computed ahead, or None
        self._next = None

    def load_compiled(self) -> float:
        """Load the compiled code the steps call (numba's machine code, from its
        cache: about a second once per process) by computing one step of noise
        of the first sample and discarding it, so that a run timed afterwards
        measures the steps alone.  Returns the seconds it took."""
        t0 = time.perf_counter()
        membrane_noise_steps(self.params.noise_step_v, self.run_seed, self.sample_idx[:1],
                             range(1), self.noise_neurons, self.params.noise_model)
        return time.perf_counter() - t0

    def _noise_chunk(self, lo: int) -> torch.Tensor | None:
        ahead = self._noise_ahead
        if self._prefetch:
            ahead = min(ahead, max(ahead // 8, lo - self._noise_first, 1))
        steps = range(lo, min(lo + ahead, self._noise_end))
        return membrane_noise_steps(self.params.noise_step_v, self.run_seed, self.sample_idx,
                                    steps, self.noise_neurons, self.params.noise_model)

    def _step_noise(self):
        k = self.step_index
        if self._noise_ahead <= 1 or k >= self._noise_end:
            return membrane_noise(self.params.noise_step_v, self.run_seed, self.sample_idx, k,
                                  self.params.noise_model)
        if self._noise is None or not self._noise_lo <= k < self._noise_lo + len(self._noise):
            ahead, self._next = self._next, None
            noise = (ahead[1].result() if ahead is not None and ahead[0] == k
                     else self._noise_chunk(k))
            if noise is None:
                return None
            self._noise, self._noise_lo = noise, k
            nxt = k + len(noise)
            if self._prefetch and nxt < self._noise_end:
                self._next = (nxt, noise_thread().submit(self._noise_chunk, nxt))
        return self._noise[k - self._noise_lo]

    def row_arrays(self) -> tuple:
        """For a compiled caller that advances one sample on the CPU in float32
        (the co-simulation's bridge): ``(v, ie, ii)``, the state's rows as numpy
        views (a step updates them in place, as ``lif_row`` does), the LIF
        kernel's parameters (``lif_row``'s, from ``leak`` to ``mbits``) and the
        ADC's ``(scale, offset, code_max)``.  Each step takes its noise from
        :meth:`next_noise`."""
        if (len(self.sample_idx) != 1 or self.params.device.type != "cpu"
                or self.params.dtype != torch.float32):
            raise ValueError("row_arrays: one sample on the cpu in float32")
        self.state = type(self.state)(*(x.contiguous() for x in self.state))
        rows = tuple(x.numpy()[0] for x in self.state)
        return rows, _kernel_params(self.params), (
            self.adc.scale_per_v.numpy(), self.adc.offset_half_lsb.numpy(), self.adc.code_max)

    def next_noise(self) -> torch.Tensor | None:
        """The noise of the next step (float32 ``[batch, n]``, or None), and the
        step counted: what :meth:`step` adds, for a caller that steps the rows of
        :meth:`row_arrays` itself."""
        noise = self._step_noise()
        self.step_index += 1
        return noise

    def codes(self) -> torch.Tensor:
        """ADC codes of the present membranes, int64 [batch, n]."""
        return adc_convert(self.state.v_mem_v, self.adc)

    def step(self, exc_sum, inh_sum, hold) -> torch.Tensor:
        """Advance one step; ``exc_sum``/``inh_sum`` int [batch, n], ``hold`` bool
        [batch, n] (refractory; None: nobody held).  Returns the bool spikes [batch, n]."""
        dev = self.params.device
        noise = self._step_noise()
        self.state, spikes = lif_step(
            self.state, self.params, torch.as_tensor(exc_sum, device=dev),
            torch.as_tensor(inh_sum, device=dev),
            None if hold is None else torch.as_tensor(hold, device=dev), noise)
        self.step_index += 1
        return spikes


_NOISE_THREAD: ThreadPoolExecutor | None = None


def noise_thread() -> ThreadPoolExecutor:
    """The one worker thread that computes noise ahead (``plan_steps(prefetch=True)``)."""
    global _NOISE_THREAD
    if _NOISE_THREAD is None:
        _NOISE_THREAD = ThreadPoolExecutor(1, thread_name_prefix="spikeloop-noise")
    return _NOISE_THREAD


def bits_to_bool(mask: int, n: int) -> list[bool]:
    return [bool((mask >> i) & 1) for i in range(n)]


def bool_to_bits(values) -> int:
    return sum(1 << i for i, v in enumerate(values) if v)
