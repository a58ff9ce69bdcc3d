"""Functional core of the training front end: pure step functions, no modules.

Everything here is a pure function of explicit tensors, a parameter object and
a state object (norse style); :mod:`spikeloop.nn.modules` wraps them in thin
``nn.Module`` s.  Layout is time-major ``[T, B, N]`` throughout (hxtorch style).

What one step means (the paper's normalised Euler reference dynamics; leak 0,
threshold 1, time step ``dt_us`` = one column-ADC sample spacing, 1.7 µs)::

    I[t+1] = a * I[t] + x[t]                    a = exp(-dt_us / tau_syn_us)
    V[t+1] = b * V[t] + I[t+1] - z[t]           b = exp(-dt_us / tau_mem_us)
    z[t+1] = Heaviside(V[t+1] - v_th)           (spike when V >= v_th = 1)

i.e. the input of step ``t`` reaches the membrane in the same step, and a
spike emitted at step ``t`` is reset by subtracting 1 (``v_th``) from the
membrane on the *next* step (``- z[t]``); the reset is not detached, so the
gradient also flows through it.  All sequences start from ``I = V = z = 0`` and
output ``V[1..T]`` / ``z[1..T]`` for inputs ``x[0..T-1]``: element ``t`` of an
output sequence is the state after the input ``x[t]`` has been integrated.

Gradient in the loop (paper, "How the gradient is formed in the loop", item 4):
with measured (chip) traces given, every step recomputes the model membrane
from the *measured* previous state (``V_meas[t-1]``, ``z_meas[t-1]``) and the
model's own synaptic current, then replaces it by the measured value through
:func:`inject` (forward: measured, backward: identity into the model value).
Backprop-through-time thus runs through the ideal equations evaluated along
the hardware trajectory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "LIFParameters",
    "DEFAULT_PARAMS",
    "LIFState",
    "LIState",
    "SuperSpike",
    "Inject",
    "superspike",
    "inject",
    "spike",
    "lif_step",
    "li_step",
    "lif_sequence",
    "li_sequence",
    "max_over_time_log_softmax",
    "spike_count_regularizer",
    "weight_regularizer",
    "DT_US",
    "TAU_US",
    "SUPERSPIKE_BETA",
    "SURROGATE_AT",
    "SURROGATE_AT_WORDS",
    "MODEL_SURROGATES",
]

DT_US = 1.7              # column-ADC sample spacing = one Euler step
TAU_US = 6.0             # tau_mem = tau_syn on the chip (hardware time)
SUPERSPIKE_BETA = 50.0   # steepness of the surrogate
#: where the surrogate derivative of a measured step is taken: at the measured
#: membrane (inject, then threshold: hxtorch's order), at the model's membrane
#: recomputed from the measured previous state (the value a spike's threshold
#: crossing has in the model; the chip's sample after a spike shows the reset),
#: or at the model's membrane recomputed from the measured previous state with
#: that state's reset undone (``model-pre-reset``: the chip samples a step in
#: which its neuron fired after the reset, and the model's step subtracts the
#: reset once more; :func:`lif_step`); each with the words a run's log uses
SURROGATE_AT_WORDS = {
    "measured": "the measured membrane",
    "model": "the model's membrane recomputed from the measured previous state",
    "model-pre-reset": "the model's membrane recomputed from the measured previous state, "
                       "its reset undone"}
SURROGATE_AT = tuple(SURROGATE_AT_WORDS)
#: the choices of SURROGATE_AT that take the derivative at the model's membrane
MODEL_SURROGATES = ("model", "model-pre-reset")


# --------------------------------------------------------------------------
# parameters and state
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class LIFParameters:
    """Model-side neuron constants (normalised membrane: leak 0, threshold 1).

    ``a`` and ``b`` are the per-step decay factors of the synaptic current and
    the membrane.  The same object serves the leaky integrator (``v_th`` and
    ``beta`` unused there).
    """

    tau_syn_us: float = TAU_US
    tau_mem_us: float = TAU_US
    dt_us: float = DT_US
    v_th: float = 1.0
    beta: float = SUPERSPIKE_BETA

    def __post_init__(self) -> None:
        if self.dt_us <= 0 or self.tau_syn_us <= 0 or self.tau_mem_us <= 0:
            raise ValueError(f"need dt_us, tau_syn_us, tau_mem_us > 0, got {self}")

    @property
    def a(self) -> float:
        """Synaptic-current decay per step, ``exp(-dt_us / tau_syn_us)``."""
        return math.exp(-self.dt_us / self.tau_syn_us)

    @property
    def b(self) -> float:
        """Membrane decay per step, ``exp(-dt_us / tau_mem_us)``."""
        return math.exp(-self.dt_us / self.tau_mem_us)


DEFAULT_PARAMS = LIFParameters()
"""The paper's constants: tau_syn = tau_mem = 6 µs, dt = 1.7 µs, threshold 1, beta 50."""


class LIFState(NamedTuple):
    """State of a LIF layer after a step: current ``i``, membrane ``v``, spikes ``z``."""

    i: torch.Tensor
    v: torch.Tensor
    z: torch.Tensor

    @classmethod
    def zeros_like(cls, x: torch.Tensor) -> LIFState:
        z = torch.zeros_like(x)
        return cls(z, z, z)


class LIState(NamedTuple):
    """State of a leaky integrator after a step: current ``i``, membrane ``v``."""

    i: torch.Tensor
    v: torch.Tensor

    @classmethod
    def zeros_like(cls, x: torch.Tensor) -> LIState:
        z = torch.zeros_like(x)
        return cls(z, z)


# --------------------------------------------------------------------------
# autograd Functions
# --------------------------------------------------------------------------
class SuperSpike(torch.autograd.Function):
    r"""Heaviside spike with the SuperSpike (fast-sigmoid) surrogate derivative.

    With :math:`x = V - v_{th}`:

    .. math::

        z = \Theta(x) = \begin{cases} 1 & x \ge 0 \\ 0 & x < 0 \end{cases}
        \qquad
        \frac{\partial z}{\partial x} := \frac{1}{(\beta |x| + 1)^2}

    ``beta`` (default 50) is an argument and receives no gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.beta = float(beta)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output / (ctx.beta * x.abs() + 1.0) ** 2, None


class Inject(torch.autograd.Function):
    r"""Gradient injection (hxtorch's ``unterjubel``).

    Forward returns the *measured* value, backward hands the incoming gradient
    unchanged to the *model* value; the measured value gets none:

    .. math::

        y = m, \qquad \frac{\partial L}{\partial s} := \frac{\partial L}{\partial y},
        \qquad \frac{\partial L}{\partial m} := 0
    """

    @staticmethod
    def forward(ctx, measured: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
        if measured.shape != model.shape:
            raise ValueError(f"measured {tuple(measured.shape)} != model {tuple(model.shape)}")
        return measured.detach().clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return None, grad_output


def superspike(v_minus_thresh: torch.Tensor, beta: float = SUPERSPIKE_BETA) -> torch.Tensor:
    """Spikes ``Heaviside(v_minus_thresh >= 0)``, SuperSpike surrogate (:class:`SuperSpike`)."""
    return SuperSpike.apply(v_minus_thresh, beta)


def inject(measured: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """``measured`` in the forward pass, gradient to ``model`` in the backward (:class:`Inject`)."""
    return Inject.apply(measured.to(model.dtype), model)


# --------------------------------------------------------------------------
# step functions
# --------------------------------------------------------------------------
def lif_step(x: torch.Tensor, state: LIFState, p: LIFParameters, *,
             measured_v: torch.Tensor | None = None,
             measured_z: torch.Tensor | None = None,
             recurrent_weight: torch.Tensor | None = None,
             surrogate_at: str = "measured") -> LIFState:
    """One Euler step of the LIF layer (see the module docstring for the equations).

    ``x`` is this step's synaptic input ``[B, N]``; ``state`` the state after the
    previous step (measured values there if the previous step was injected).
    With ``measured_v`` the new membrane is ``inject(measured_v, V_model)``; the
    spike is the surrogate spike of that (measured) membrane, replaced by
    ``measured_z`` through :func:`inject` when given.  ``surrogate_at="model"``
    takes the surrogate derivative at ``V_model`` instead (the forward spike
    stays that of the measured membrane).  ``recurrent_weight``
    ``[N, N]``: the previous step's spikes (measured ones if injected) add
    ``z[t-1] @ W_rec^T`` to this step's input.

    ``surrogate_at="model-pre-reset"`` (with ``measured_v``): the chip's sample
    of a step in which its neuron fired is taken after the neuron's reset, while
    the model resets a step later (``- v_th z[t-1]``); recomputing ``V_model``
    from that sample subtracts the reset twice.  This choice starts the step from
    the previous membrane with its reset undone, ``V_meas[t-1] + v_th
    z_meas[t-1]``: ``V_model[t] = b (V_meas[t-1] + v_th z[t-1]) + I[t] - v_th
    z[t-1]``, the added term a constant (the gradient's paths are the other
    choices').
    """
    if recurrent_weight is not None:
        x = x + torch.matmul(state.z, recurrent_weight.t())
    i = p.a * state.i + x
    v = p.b * state.v + i - p.v_th * state.z
    if measured_v is not None and surrogate_at == "model-pre-reset":
        v = v + (p.b * p.v_th * state.z).detach()
    v, z = spike(v, p.v_th, p.beta, measured_v=measured_v, measured_z=measured_z,
                 surrogate_at=surrogate_at)
    return LIFState(i, v, z)


def spike(v: torch.Tensor, v_th: float, beta: float, *,
          measured_v: torch.Tensor | None = None, measured_z: torch.Tensor | None = None,
          surrogate_at: str = "measured") -> tuple[torch.Tensor, torch.Tensor]:
    """A spiking layer's membrane and spikes ``(v, z)`` after one step, from the
    model's new membrane ``v``: ``z = superspike(v - v_th)``; with ``measured_v``
    the membrane becomes ``inject(measured_v, v)`` and the spike that of the
    measured membrane, its surrogate derivative taken at the measured membrane
    (``surrogate_at="measured"``) or at ``v`` (``"model"``, ``"model-pre-reset"``:
    :func:`lif_step` computes ``v`` for each); with ``measured_z``
    the spike becomes ``inject(measured_z, z)``."""
    if surrogate_at not in SURROGATE_AT:
        raise ValueError(f"surrogate_at = {surrogate_at!r}; allowed: {', '.join(SURROGATE_AT)}")
    if measured_v is None:
        z = superspike(v - v_th, beta)
    elif surrogate_at in MODEL_SURROGATES:
        z = inject((measured_v >= v_th).to(v.dtype), superspike(v - v_th, beta))
        v = inject(measured_v, v)
    else:
        v = inject(measured_v, v)
        z = superspike(v - v_th, beta)
    if measured_z is not None:
        z = inject(measured_z, z)
    return v, z


def li_step(x: torch.Tensor, state: LIState, p: LIFParameters, *,
            measured_v: torch.Tensor | None = None) -> LIState:
    """One Euler step of the leaky integrator: ``I' = a I + x``, ``V' = b V + I'``."""
    i = p.a * state.i + x
    v = p.b * state.v + i
    if measured_v is not None:
        v = inject(measured_v, v)
    return LIState(i, v)


def _check_measured(name: str, m: torch.Tensor | None, x: torch.Tensor) -> None:
    if m is not None and m.shape != x.shape:
        raise ValueError(f"{name} has shape {tuple(m.shape)}, input {tuple(x.shape)}; "
                         "both must be [T, B, N] on the same time grid")


def lif_sequence(x: torch.Tensor, params: LIFParameters = DEFAULT_PARAMS, *,
                 measured_v: torch.Tensor | None = None,
                 measured_z: torch.Tensor | None = None,
                 state: LIFState | None = None,
                 recurrent_weight: torch.Tensor | None = None,
                 surrogate_at: str = "measured"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run :func:`lif_step` over time.

    ``x``: synaptic input ``[T, B, N]``.  ``measured_v`` / ``measured_z``: the
    chip's normalised membrane traces and binned spikes on the same grid
    (``[T, B, N]``), element ``t`` being the state after input ``x[t]``.
    ``recurrent_weight``: ``[N, N]`` hidden-to-hidden weights; ``surrogate_at``:
    where a measured step's surrogate derivative is taken (see :func:`lif_step`).
    Returns ``(z, v)``, each ``[T, B, N]``.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, N], got {tuple(x.shape)}")
    _check_measured("measured_v", measured_v, x)
    _check_measured("measured_z", measured_z, x)
    s = LIFState.zeros_like(x[0]) if state is None else state
    zs, vs = [], []
    # one unbind, not x[t] per step: the backward of x[t] fills a zero tensor of
    # x's whole size per step (quadratic in T), unbind's stacks the steps once
    xs, mv, mz = (None if a is None else a.unbind(0) for a in (x, measured_v, measured_z))
    for t in range(x.shape[0]):
        s = lif_step(xs[t], s, params,
                     measured_v=None if mv is None else mv[t],
                     measured_z=None if mz is None else mz[t],
                     recurrent_weight=recurrent_weight, surrogate_at=surrogate_at)
        zs.append(s.z)
        vs.append(s.v)
    return torch.stack(zs), torch.stack(vs)


def li_sequence(x: torch.Tensor, params: LIFParameters = DEFAULT_PARAMS, *,
                measured_v: torch.Tensor | None = None,
                state: LIState | None = None) -> torch.Tensor:
    """Run :func:`li_step` over time; returns the membrane ``[T, B, N]``."""
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, N], got {tuple(x.shape)}")
    _check_measured("measured_v", measured_v, x)
    s = LIState.zeros_like(x[0]) if state is None else state
    vs = []
    xs, mv = x.unbind(0), None if measured_v is None else measured_v.unbind(0)
    for t in range(x.shape[0]):
        s = li_step(xs[t], s, params, measured_v=None if mv is None else mv[t])
        vs.append(s.v)
    return torch.stack(vs)


# --------------------------------------------------------------------------
# readout and regularisers
# --------------------------------------------------------------------------
def max_over_time_log_softmax(v_out: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """Readout: ``log_softmax(scale * max_t v_out[t])``; ``[T, B, C]`` -> ``[B, C]``."""
    return F.log_softmax(scale * v_out.amax(dim=0), dim=-1)


def spike_count_regularizer(z: torch.Tensor, strength: float = 5e-4) -> torch.Tensor:
    """``strength * mean_{b,n} (sum_t z[t, b, n])^2`` for spikes ``[T, B, N]``."""
    return strength * z.sum(dim=0).pow(2).mean()


def weight_regularizer(w: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
    """``strength * mean(w^2)`` (the paper applies it to the hidden weights)."""
    return strength * w.pow(2).mean()
