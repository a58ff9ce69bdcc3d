"""The PPU's programs for the rest of the chip (issue 7, programs 1 to 3), as
assembly sources for spikeloop/ppu_asm.py, with the data-memory words the
host writes before it starts them and their cycle counts.

Every program uses the assembler's predefined constants (docs/ppu.md), so one
source serves every preset.  The host loads a program through the host bus
(``ppu_imem``), its parameters into ``ppu_dmem``, and pulses ``ppu_ctrl``
start; docs/ppu.md "The PPU in the chip" describes the ports they use.

- :data:`TRACE` (program 1, trace recording): waits for each ADC sample
  (``csrr adc_count``; the ADC control samples at its period) and streams its
  ``ADC_CHUNKS`` vectors into the output buffer, for ``dmem[0]`` samples.
  Started in the first running cycle of a run, the buffer ``ppu_out`` then
  holds the run's ADC codes, sample by sample (neuron ``i`` of a sample in
  8-bit lane ``i`` of its chunk vectors).
- :data:`INFERENCE` (program 2, inference mode): samples follow each other
  every ``dmem[1]`` cycles (1475 cycles = 11.8 us at 125 MHz, the paper's
  spacing); at each boundary ``time >= k * dmem[1]`` (``k = 1 ..
  dmem[0] - 1``) it resets every neuron (``vrst``, one cycle per neuron chunk)
  and stores the ``time`` it saw at dmem word ``RESET_LOG + k``: the resets
  of boundary ``k`` are in cycles ``dmem[RESET_LOG + k] + 3 + j``, chunk
  ``j``.
- :data:`WEIGHT_UPDATE` (program 3): adds the signed 8-bit update vectors at
  dmem vectors ``1 .. dmem[1]`` to the weights of the ``dmem[1]`` row chunks
  from row address ``dmem[0]`` on (address = chunk | row << ROW_CHUNK_BITS |
  half << (ROW_CHUNK_BITS + ROW_BITS)), with saturation at ``0 ..
  WEIGHT_MAX``: ``w <- clip(w + u, 0, WEIGHT_MAX)``; labels are kept.
"""
from __future__ import annotations

import numpy as np

from spikeloop.config import ChipConfig
from spikeloop.model.ppu import PpuGeometry, chip_geometry, pack_lanes, unpack_lanes
from spikeloop.ppu_asm import Program, assemble

#: dmem word where INFERENCE logs the time of boundary k (at RESET_LOG + k)
RESET_LOG = 16
#: the paper's spacing of samples in inference mode: 11.8 us at 125 MHz
INFERENCE_SPACING_CYCLES = 1475

TRACE = """
# program 1: trace recording. dmem[0] = samples to stream; dmem[1] <- cycles used
        lw r1, 0(r0)             # N
        addi r5, r0, 0           # sample index
        beq r1, r0, done
wait:
        csrr r6, adc_count
        bgeu r5, r6, wait        # until sample r5 is in the ADC buffer
        slli r7, r5, ADC_CHUNK_BITS
        addi r8, r0, 0
chunk:
        add r9, r7, r8
        vadc v3, 0(r9)
        vout v3
        addi r8, r8, 1
        addi r10, r0, ADC_CHUNKS
        bne r8, r10, chunk
        addi r5, r5, 1
        bne r5, r1, wait
done:
        csrr r11, cycle
        sw r11, 1(r0)
        halt
"""

INFERENCE = """
# program 2: inference mode. dmem[0] = samples K, dmem[1] = spacing P in cycles;
# at time >= k*P (k = 1..K-1) every neuron is reset; dmem[RESET_LOG + k] <- time seen
        .equ RESET_LOG, {RESET_LOG}
        lw r1, 0(r0)             # K
        lw r2, 1(r0)             # P
        addi r3, r0, 1
        vsplat.b v1, r3          # every lane nonzero: every neuron of a chunk
        addi r4, r0, 1           # k
        mv r5, r2                # next boundary T = k*P
loop:
        bgeu r4, r1, done
wait:
        csrr r6, time
        bltu r6, r5, wait        # until time >= T
        addi r7, r0, 0
reset:
        vrst v1, 0(r7)
        addi r7, r7, 1
        addi r8, r0, NEURON_CHUNKS
        bne r7, r8, reset
        sw r6, RESET_LOG(r4)
        add r5, r5, r2
        addi r4, r4, 1
        j loop
done:
        halt
""".replace("{RESET_LOG}", str(RESET_LOG))

WEIGHT_UPDATE = """
# program 3: weight update. dmem[0] = first row address A, dmem[1] = row chunks M,
# dmem vectors 1..M = signed 8-bit updates; w <- clip(w + u, 0, WEIGHT_MAX)
        lw r2, 0(r0)             # row address
        lw r4, 1(r0)
        add r4, r4, r2           # end address
        addi r1, r0, 1           # dmem vector of the first update
        vsplat.b v6, r0          # 0
        addi r3, r0, WEIGHT_MAX
        vsplat.b v7, r3
        beq r2, r4, done
row:
        vld v1, 0(r1)
        vlw v2, 0(r2)
        vadds.b v2, v2, v1
        vmax.b v2, v2, v6
        vmin.b v2, v2, v7
        vsw v2, 0(r2)
        addi r1, r1, 1
        addi r2, r2, 1
        bne r2, r4, row
done:
        halt
"""

PROGRAMS = {"trace": TRACE, "inference": INFERENCE, "weight_update": WEIGHT_UPDATE}


def program(name: str, cfg: ChipConfig) -> Program:
    """Program ``name`` assembled for ``cfg``."""
    try:
        src = PROGRAMS[name]
    except KeyError:
        raise ValueError(f"unknown PPU program {name!r}; allowed: {', '.join(PROGRAMS)}") from None
    return assemble(src, cfg)


def _vector_words(geom: PpuGeometry, vector: int) -> list[int]:
    return unpack_lanes(vector, 32, geom.vector_words)


def trace_dmem(cfg: ChipConfig, n_samples: int) -> list[tuple[int, int]]:
    """(dmem word, value) writes that make TRACE stream ``n_samples`` samples."""
    if not 0 <= n_samples <= cfg.adc_buffer_depth:
        raise ValueError(f"n_samples = {n_samples}; allowed: 0..{cfg.adc_buffer_depth} "
                         "(adc_buffer_depth)")
    return [(0, n_samples)]


def trace_cycles(cfg: ChipConfig, wait_polls: list[int]) -> int:
    """TRACE's cycle count when sample ``s`` was awaited with ``wait_polls[s]``
    extra polls (0: already in the buffer at the first ``csrr``)."""
    g = chip_geometry(cfg)
    per_chunk = 2 + 1 + 1 + 1 + 1 + 1          # add, vadc, vout, addi, addi, bne
    per_sample = 2 + 2 * 1 + per_chunk * g.adc_chunks + 2   # csrr+bgeu, slli+addi, ..., addi+bne
    head = 2 + 1 + 1                           # lw, addi, beq
    tail = 1 + 1 + 1                           # csrr, sw, halt
    if not wait_polls:
        return head + tail
    return head + tail + per_sample * len(wait_polls) + 2 * sum(wait_polls)


def trace_vectors_to_codes(cfg: ChipConfig, vectors: list[int]) -> np.ndarray:
    """[samples, neurons] ADC codes from TRACE's streamed vectors."""
    g = chip_geometry(cfg)
    k = g.adc_chunks
    if len(vectors) % k:
        raise ValueError(f"{len(vectors)} vectors is not a multiple of ADC_CHUNKS = {k}")
    rows = []
    for s in range(len(vectors) // k):
        lanes = []
        for j in range(k):
            lanes += unpack_lanes(vectors[s * k + j], g.adc_lane_bits, g.adc_lanes)
        rows.append(lanes[:cfg.n_neurons])
    return np.asarray(rows, dtype=np.int64).reshape(-1, cfg.n_neurons)


def inference_dmem(cfg: ChipConfig, n_samples: int,
                   spacing: int = INFERENCE_SPACING_CYCLES) -> list[tuple[int, int]]:
    """(dmem word, value) writes for INFERENCE: ``n_samples`` samples ``spacing``
    cycles apart."""
    if not 1 <= n_samples <= chip_geometry(cfg).dmem_words - RESET_LOG:
        raise ValueError(f"n_samples = {n_samples}; allowed: 1.."
                         f"{chip_geometry(cfg).dmem_words - RESET_LOG}")
    if not 16 <= spacing < 1 << 31:
        raise ValueError(f"spacing = {spacing} cycles; allowed: 16..2**31-1")
    return [(0, n_samples), (1, spacing)]


def weight_update_dmem(cfg: ChipConfig, first: int, updates: np.ndarray) -> list[tuple[int, int]]:
    """(dmem word, value) writes for WEIGHT_UPDATE: ``updates`` [M, lanes] signed
    ints in -128..127, one row of lanes per row chunk from row address ``first``."""
    g = chip_geometry(cfg)
    updates = np.asarray(updates, dtype=np.int64)
    if updates.ndim != 2 or updates.shape[1] != g.lanes(8):
        raise ValueError(f"updates has shape {updates.shape}; allowed: [M, {g.lanes(8)}] "
                         "(one 8-bit lane per column of a row chunk)")
    if updates.size and not (-128 <= updates.min() and updates.max() <= 127):
        raise ValueError(f"updates range {updates.min()}..{updates.max()}; allowed: -128..127")
    M = len(updates)
    if not 1 + M <= g.dmem_vectors:
        raise ValueError(f"{M} row chunks of updates; allowed: at most {g.dmem_vectors - 1} "
                         "(the data memory's vectors after vector 0)")
    if not 0 <= first or first + M > (1 << g.row_addr_bits):
        raise ValueError(f"row addresses {first}..{first + M - 1}; allowed: "
                         f"0..{(1 << g.row_addr_bits) - 1}")
    writes = [(0, first), (1, M)]
    for i, u in enumerate(updates):
        vec = pack_lanes([int(x) & 0xFF for x in u], 8)
        base = (1 + i) * g.vector_words
        writes += [(base + j, w) for j, w in enumerate(_vector_words(g, vec))]
    return writes


def weight_update_cycles(cfg: ChipConfig, n_chunks: int) -> int:
    """WEIGHT_UPDATE's cycle count for ``n_chunks`` row chunks."""
    return 11 + 12 * n_chunks


def weight_update_numpy(cfg: ChipConfig, weights: np.ndarray, first: int,
                        updates: np.ndarray) -> np.ndarray:
    """What WEIGHT_UPDATE makes of ``weights`` [halves, rows, columns], in numpy."""
    g = chip_geometry(cfg)
    out = np.array(weights, dtype=np.int64, copy=True)
    L = g.lanes(8)
    for i, u in enumerate(np.asarray(updates, dtype=np.int64)):
        half, row, chunk, ok = g.split_row_address(first + i)
        if not ok:
            continue
        cols = np.arange(chunk * L, min((chunk + 1) * L, cfg.columns_per_half))
        out[half, row, cols] = np.clip(out[half, row, cols] + u[:len(cols)], 0, cfg.weight_max)
    return out
