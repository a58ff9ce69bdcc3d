"""The PPU's programs for the rest of the chip (trace recording, inference
mode, weight update, on-chip learning), as assembly sources for
spikeloop/ppu/asm.py, with the data-memory words the host writes before it
starts them and their cycle counts.

Every program uses the assembler's predefined constants (docs/ppu.md), so one
source serves every preset.  The host loads a program through the host bus
(``ppu_imem``), its parameters into ``ppu_dmem``, and pulses ``ppu_ctrl``
start; docs/ppu.md "The PPU in the chip" describes the ports they use.

- :data:`TRACE` (trace recording): waits for each ADC sample
  (``csrr adc_count``; the ADC control samples at its period) and streams its
  ``ADC_CHUNKS`` vectors into the output buffer, for ``dmem[0]`` samples.
  Started with a run (the host's start in the clear cycle: its first
  instruction in running cycle 1, docs/ppu.md), the buffer ``ppu_out`` then
  holds the run's ADC codes, sample by sample (neuron ``i`` of a sample in
  8-bit lane ``i`` of its chunk vectors).
- :data:`INFERENCE` (inference mode): samples follow each other
  every ``dmem[1]`` cycles (1475 cycles = 11.8 us at 125 MHz, the paper's
  spacing); at each boundary ``time >= k * dmem[1]`` (``k = 1 ..
  dmem[0] - 1``) it resets every neuron (``vrst``, one cycle per neuron chunk)
  and stores the ``time`` it saw at dmem word ``RESET_LOG + k``: the resets
  of boundary ``k`` are in cycles ``dmem[RESET_LOG + k] + 3 + j``, chunk
  ``j``.
- :data:`WEIGHT_UPDATE` (weight update): adds the signed 8-bit update vectors at
  dmem vectors ``1 .. dmem[1]`` to the weights of the ``dmem[1]`` row chunks
  from row address ``dmem[0]`` on (address = chunk | row << ROW_CHUNK_BITS |
  half << (ROW_CHUNK_BITS + ROW_BITS)), with saturation at ``0 ..
  WEIGHT_MAX``: ``w <- clip(w + u, 0, WEIGHT_MAX)``; labels are kept.
- :data:`LEARN` (on-chip learning without the host): homeostatic
  synaptic scaling, started in every trial's clear cycle.  It measures each
  neuron's response ``r = peak - first ADC sample`` of the trial, streams
  ``r`` and its step ``d = sign(T - r) * min((|T - r| * G) >> 4, D)``, and
  after the run's drain (``dmem[1]`` cycles after it saw ``time >= dmem[0]``)
  adds ``d`` to the plastic rows of each neuron's column with saturation
  (:func:`learn_dmem` lists the data memory; docs/ppu.md describes the rule).
"""
from __future__ import annotations

import functools
import re

import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import PpuGeometry, chip_geometry, out_buffer_vectors
from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.ppu.asm import Program, assemble

#: dmem word where INFERENCE logs the time of boundary k (at RESET_LOG + k)
RESET_LOG = 16
#: the paper's spacing of samples in inference mode: 11.8 us at 125 MHz
INFERENCE_SPACING_CYCLES = 1475

TRACE = """
# trace recording. dmem[0] = samples to stream; dmem[1] <- cycles used
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
# inference mode. dmem[0] = samples K, dmem[1] = spacing P in cycles;
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
# weight update. dmem[0] = first row address A, dmem[1] = row chunks M,
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

STREAM = """
# stream recording of the ADC ring: every sample of a long run, chunks C0 .. C0+C-1.
# dmem[0] = samples N, dmem[1] = first chunk C0, dmem[2] = chunks C per sample;
# dmem[3] <- samples missed (overwritten in the ring before they were read),
# dmem[4] <- cycle of its end
        lw r1, 0(r0)             # N
        lw r2, 1(r0)             # C0
        lw r3, 2(r0)
        add r3, r3, r2           # chunk end
        addi r4, r0, 0           # samples missed
        addi r5, r0, 0           # sample index k
        addi r12, r0, 0          # its ring entry, k % ADC_DEPTH
        addi r13, r0, ADC_DEPTH
        beq r1, r0, done
wait:
        csrr r6, adc_count
        bgeu r5, r6, wait        # until sample k is taken
        sub r7, r6, r5           # samples taken from k on
        bltu r7, r13, read       # fewer than ADC_DEPTH: the next sample cannot overwrite k
        addi r4, r4, 1           # sample k is lost (or about to be): counted, not streamed
        j advance
read:
        slli r7, r12, ADC_CHUNK_BITS
        mv r8, r2
chunk:
        add r9, r7, r8
        vadc v3, 0(r9)
        vout v3
        addi r8, r8, 1
        bne r8, r3, chunk
advance:
        addi r5, r5, 1
        addi r12, r12, 1
        bne r12, r13, next
        addi r12, r0, 0
next:
        bne r5, r1, wait
done:
        sw r4, 3(r0)
        csrr r11, cycle
        sw r11, 4(r0)
        halt
"""

#: STREAM's dmem words: inputs samples, first chunk, chunks; outputs missed, end cycle
STREAM_N, STREAM_FIRST_CHUNK, STREAM_CHUNKS, STREAM_MISSED, STREAM_END_CYCLE = 0, 1, 2, 3, 4

PROGRAMS = {"trace": TRACE, "inference": INFERENCE, "weight_update": WEIGHT_UPDATE,
            "stream": STREAM}

#: the example of docs/ppu.md ("Example: weight update"; not one of :data:`PROGRAMS`):
#: adds one signed update (8-bit lanes of dmem vector 0) to every row chunk of both
#: halves with saturation at 0..WEIGHT_MAX, streams each new row, and resets the
#: neurons whose lane of the update is positive.  tests/test_ppu_rtl.py checks that
#: the document's copy assembles to the same words.
UPDATE_EXAMPLE = """
        vld v1, 0(r0)              # the update, 8-bit signed lanes
        addi r2, r0, 0
        vsplat.b v6, r0            # 0
        addi r3, r0, WEIGHT_MAX
        vsplat.b v7, r3
        addi r4, r0, HALVES*ROWS*ROW_CHUNKS
    row:
        vlw v2, 0(r2)
        vadds.b v2, v2, v1
        vmax.b v2, v2, v6
        vmin.b v2, v2, v7
        vsw v2, 0(r2)
        vout v2
        addi r2, r2, 1
        bne r2, r4, row
        vcmpgt.b v5, v1, v6
        vrst v5, 0(r0)
        halt
"""


def program(name: str, cfg: ChipConfig) -> Program:
    """Program ``name`` assembled for ``cfg`` (a copy of the assembly, which is
    kept per program and config: a network's runs ask for it run after run)."""
    if name not in PROGRAMS:
        raise ValueError(f"unknown PPU program {name!r}; allowed: {', '.join(PROGRAMS)}")
    p = _assembled(PROGRAMS[name], cfg)
    return Program(list(p.words), list(p.lines), dict(p.labels))


@functools.lru_cache(maxsize=64)
def _assembled(source: str, cfg: ChipConfig) -> Program:
    return assemble(source, cfg)


_LINE = re.compile(r"(?P<labels>\s*(?:[A-Za-z_]\w*\s*:\s*)*)(?P<body>[^#;]*)(?P<comment>.*)$")
_EQU = re.compile(r"\s*\.equ\s+([A-Za-z_]\w*)\s*,")


def compose(*sources: str) -> str:
    """The source of the programs ``sources`` run one after another from one
    start: each part's ``halt`` continues with the next part (the last
    instruction of a part, if a ``halt``, is dropped; another ``halt`` jumps to
    the part's end), the last part's halts stay.  The labels and ``.equ``
    names a part defines get the prefix ``p<i>_`` (part ``i``, from 0), so
    parts may define the same names.  The parts share the registers and the
    data memory: each finds the dmem words it reads as the host or a part
    before it left them.  Branch targets must be labels (an instruction
    address would point into another part)."""
    out = []
    for i, src in enumerate(sources):
        last = i == len(sources) - 1
        lines = [_LINE.match(ln) for ln in src.splitlines()]
        names = set()
        for m in lines:
            names.update(re.findall(r"([A-Za-z_]\w*)\s*:", m["labels"]))
            equ = _EQU.match(m["body"])
            if equ:
                names.add(equ.group(1))
        rename = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b") \
            if names else None
        code = [k for k, m in enumerate(lines) if m["body"].strip()
                and not m["body"].strip().startswith(".equ")]
        end = f"p{i}_end"
        jumps = False
        out.append(f"# -- part {i}")
        for k, m in enumerate(lines):
            labels, body, comment = m["labels"], m["body"], m["comment"]
            if rename is not None:
                labels = rename.sub(rf"p{i}_\1", labels)
                body = rename.sub(rf"p{i}_\1", body)
            if not last and body.strip() == "halt":
                if code and k == code[-1]:
                    body = ""
                else:
                    body, jumps = body.replace("halt", f"j {end}"), True
            out.append((labels + body + comment).rstrip())
        if jumps:
            out.append(f"{end}:")
    return "\n".join(out) + "\n"


def _vector_words(geom: PpuGeometry, vector: int) -> list[int]:
    return unpack_array(vector, 32, geom.vector_words)


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
    return stream_vectors_to_codes(cfg, vectors, 0, k)[:, :cfg.n_neurons]


def stream_chunks(cfg: ChipConfig, neurons) -> tuple[int, int]:
    """``(first chunk, chunks)``: the ADC chunks that hold every neuron of ``neurons``."""
    g = chip_geometry(cfg)
    neurons = np.asarray(neurons, dtype=np.int64).ravel()
    if not len(neurons):
        return 0, 0
    if neurons.min() < 0 or neurons.max() >= cfg.n_neurons:
        raise ValueError(f"neurons {neurons.min()}..{neurons.max()}; allowed: "
                         f"0..{cfg.n_neurons - 1}")
    first = int(neurons.min()) // g.adc_lanes
    return first, int(neurons.max()) // g.adc_lanes + 1 - first


def stream_cycles_per_sample(cfg: ChipConfig, n_chunks: int) -> int:
    """STREAM's most cycles per sample read (no extra poll, the ring entry
    wrapping): the ADC period must be at least this long, or the program falls
    behind the ring."""
    per_chunk = 1 + 2 + 1 + 1 + 1              # add, vadc, vout, addi, bne
    # csrr, bgeu, sub, bltu, slli, mv; the chunks; addi, addi, bne, addi (wrap), bne
    return 6 + per_chunk * n_chunks + 5


def stream_dmem(cfg: ChipConfig, n_samples: int, first_chunk: int, n_chunks: int, *,
                adc_period: int) -> list[tuple[int, int]]:
    """(dmem word, value) writes that make STREAM stream chunks ``first_chunk ..
    first_chunk + n_chunks - 1`` of ``n_samples`` samples taken every
    ``adc_period`` cycles.  Refused: a chip without the ADC ring (where more
    samples than the buffer holds are needed), an output memory too small for the
    stream, a sample count the ADC's saturating count cannot reach, a period
    shorter than the program's cycles per sample."""
    g = chip_geometry(cfg)
    if not 1 <= n_chunks or not 0 <= first_chunk or first_chunk + n_chunks > g.adc_chunks:
        raise ValueError(f"chunks {first_chunk}..{first_chunk + n_chunks - 1}; allowed: "
                         f"0..{g.adc_chunks - 1} (ADC_CHUNKS = {g.adc_chunks}), at least one")
    top = (1 << cfg.counter_bits) - 1 if cfg.adc_ring else cfg.adc_buffer_depth
    if not 0 <= n_samples <= top:
        why = ("the ADC's sample count saturates there" if cfg.adc_ring else
               f"the ADC buffer holds {cfg.adc_buffer_depth} samples (a chip with adc_ring "
               "streams more)")
        raise ValueError(f"n_samples = {n_samples}; allowed: 0..{top} ({why})")
    if n_samples * n_chunks > out_buffer_vectors(cfg):
        raise ValueError(f"{n_samples} samples x {n_chunks} chunks = {n_samples * n_chunks} "
                         f"vectors; the PPU's output memory holds {out_buffer_vectors(cfg)} "
                         "(ChipConfig.ppu_out_vectors)")
    need = stream_cycles_per_sample(cfg, n_chunks)
    if adc_period < need:
        raise ValueError(f"adc_period = {adc_period} cycles; the stream program needs at "
                         f"least {need} per sample of {n_chunks} chunk(s)")
    return [(STREAM_N, n_samples), (STREAM_FIRST_CHUNK, first_chunk), (STREAM_CHUNKS, n_chunks)]


def stream_vectors_to_codes(cfg: ChipConfig, vectors: list[int], first_chunk: int,
                            n_chunks: int) -> np.ndarray:
    """[samples, n_chunks * ADC lanes] ADC codes from STREAM's vectors: column
    ``i`` is neuron ``first_chunk * lanes + i`` (lanes beyond the last neuron are 0)."""
    g = chip_geometry(cfg)
    if n_chunks < 1 or len(vectors) % n_chunks:
        raise ValueError(f"{len(vectors)} vectors is not a multiple of {n_chunks} chunks")
    # the lanes of a vector are its little-endian bytes (8-bit lanes) or byte pairs
    # (16-bit): one bytes object for all vectors, read as one array
    nbytes = g.adc_lanes * g.adc_lane_bits // 8
    mask = (1 << (8 * nbytes)) - 1
    raw = b"".join((int(v) & mask).to_bytes(nbytes, "little") for v in vectors)
    lanes = np.frombuffer(raw, _LANE_DTYPES[g.adc_lane_bits]).astype(np.int64)
    return lanes.reshape(len(vectors) // n_chunks, n_chunks * g.adc_lanes)


_LANE_DTYPES = {8: np.dtype("<u1"), 16: np.dtype("<u2")}


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
        vec = pack_array([int(x) & 0xFF for x in u], 8, wrap=True)
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


# -- on-chip learning: homeostatic synaptic scaling, without the host ------------------

#: LEARN's scalar dmem words (inputs written once by the host, outputs per trial)
LEARN_L, LEARN_DRAIN, LEARN_GAIN, LEARN_MAX_STEP, LEARN_N_ROWS = 0, 1, 2, 3, 4
LEARN_SAMPLES, LEARN_END_CYCLE, LEARN_WRITE_CYCLE = 5, 6, 7
#: first dmem word of LEARN's list of plastic row addresses
LEARN_ROW_LIST = 16
#: the gain's fixed point: the step is (|error| * gain) >> LEARN_GAIN_SHIFT
LEARN_GAIN_SHIFT = 4

LEARN = """
# on-chip learning: homeostatic synaptic scaling, one trial per run (started in the clear cycle).
# Measures every neuron's response r = peak - first ADC sample of the trial, then after
# the run's drain moves every plastic weight of neuron n's column by
#   d = sign(T - r) * min((|T - r| * G) >> 4, D)          (lanes of `mask` only)
# with saturation at 0..WEIGHT_MAX. Streams r and d (ADC_CHUNKS vectors each, interleaved
# per chunk). dmem: [0] L = live cycles of the run, [1] drain cycles to wait after time >= L,
# [2] gain G, [3] max step D, [4] plastic rows M, [16 ..] their row addresses (chunk 0);
# vectors TARGET_V.. targets T, MASK_V.. neuron mask (0xff: plastic).
# Out: [5] samples measured, [6] cycle after time >= L was seen, [7] cycle of the first write.
        .equ ROW_LIST, 16
        .equ TARGET_V, (ROW_LIST + HALVES*ROWS + VECTOR_WORDS - 1) // VECTOR_WORDS
        .equ MASK_V, TARGET_V + ADC_CHUNKS
        .equ BASE_V, MASK_V + ADC_CHUNKS
        .equ PEAK_V, BASE_V + ADC_CHUNKS
        .equ DELTA_V, PEAK_V + ADC_CHUNKS
        .equ ROWD_V, DELTA_V + ADC_CHUNKS + 1
        lw r1, 0(r0)             # L
        addi r2, r0, 0           # samples measured
        addi r12, r0, ADC_CHUNKS
poll:
        csrr r3, time            # time before adc_count: time >= L here means no more samples
        csrr r4, adc_count
        bltu r2, r4, sample
        bltu r3, r1, poll
        j measured
sample:
        slli r5, r2, ADC_CHUNK_BITS
        addi r6, r0, 0           # ADC chunk j
chunk:
        add r7, r5, r6
        vadc v1, 0(r7)
        bne r2, r0, later
        vst v1, BASE_V(r6)       # sample 0: the baseline, and the peak so far
        vst v1, PEAK_V(r6)
        j next
later:
        vld v2, PEAK_V(r6)
        vmaxu.b v2, v2, v1
        vst v2, PEAK_V(r6)
next:
        addi r6, r6, 1
        bne r6, r12, chunk
        addi r2, r2, 1
        j poll
measured:
        csrr r9, cycle           # at least one cycle after time >= L was read
        sw r2, 5(r0)
        sw r9, 6(r0)
        beq r2, r0, finish       # no ADC sample: nothing measured, nothing written
        lw r10, 2(r0)
        vsplat.b v5, r10         # G
        lw r10, 3(r0)
        vsplat.b v6, r10         # D
        addi r6, r0, 0
rule:
        vld v1, BASE_V(r6)
        vld v2, PEAK_V(r6)
        vsubu.b v1, v2, v1       # r = peak - baseline
        vout v1
        vld v2, TARGET_V(r6)
        vsubu.b v3, v2, v1       # (T - r)+
        vsubu.b v4, v1, v2       # (r - T)+
        vmulu.b v3, v3, v5, 4
        vmulu.b v4, v4, v5, 4
        vminu.b v3, v3, v6
        vminu.b v4, v4, v6
        vsub.b v3, v3, v4        # d, signed
        vld v2, MASK_V(r6)
        vand.b v3, v3, v2
        vout v3
        vst v3, DELTA_V(r6)
        addi r6, r6, 1
        bne r6, r12, rule
# row layout: vector ROWD_V + h*ROW_CHUNKS + c <- the d bytes of neurons h*COLS + c*LANES_B ..
        addi r10, r0, 0          # half h
        addi r11, r0, ROWD_V*VECTOR_WORDS
        addi r13, r0, VECTOR_WORDS
hcopy:
        addi r3, r0, COLS//4
        mul r3, r3, r10
        addi r3, r3, DELTA_V*VECTOR_WORDS   # source word of chunk 0 of half h
        addi r6, r0, 0           # row chunk c
ccopy:
        addi r4, r0, 0           # word
wcopy:
        add r7, r3, r4
        lw r8, 0(r7)
        add r7, r11, r4
        sw r8, 0(r7)
        addi r4, r4, 1
        bne r4, r13, wcopy
        addi r3, r3, LANES_B//4
        addi r11, r11, VECTOR_WORDS
        addi r6, r6, 1
        addi r7, r0, ROW_CHUNKS
        bne r6, r7, ccopy
        addi r10, r10, 1
        addi r7, r0, HALVES
        bne r10, r7, hcopy
# no synapse write before the drain has passed: DRAIN cycles after r9
        lw r10, 1(r0)
        add r10, r9, r10
drain:
        csrr r11, cycle
        bltu r11, r10, drain
        sw r11, 7(r0)
        lw r4, 4(r0)             # M
        vsplat.b v6, r0          # 0
        addi r3, r0, WEIGHT_MAX
        vsplat.b v7, r3
        addi r13, r0, ROW_CHUNKS
        addi r2, r0, 0           # row i
        beq r4, r0, finish
row:
        lw r5, ROW_LIST(r2)      # row address of chunk 0
        srli r6, r5, ROW_CHUNK_BITS + ROW_BITS
        mul r6, r6, r13          # h * ROW_CHUNKS
        addi r8, r0, 0           # chunk c
rchunk:
        add r9, r6, r8
        vld v1, ROWD_V(r9)
        add r10, r5, r8
        vlw v2, 0(r10)
        vadds.b v2, v2, v1
        vmax.b v2, v2, v6
        vmin.b v2, v2, v7
        vsw v2, 0(r10)
        addi r8, r8, 1
        bne r8, r13, rchunk
        addi r2, r2, 1
        bne r2, r4, row
finish:
        halt
"""

PROGRAMS["learn"] = LEARN


def _learn_check_config(cfg: ChipConfig) -> PpuGeometry:
    g = chip_geometry(cfg)
    if g.adc_lane_bits != 8:
        raise ValueError(f"ChipConfig.adc_bits = {cfg.adc_bits}; LEARN needs 8-bit ADC lanes "
                         "(allowed: adc_bits <= 8)")
    if cfg.adc_ring:
        raise ValueError("ChipConfig.adc_ring = true; LEARN reads ADC sample k at entry k, "
                         "as a buffer without the ring keeps it (allowed: adc_ring = false)")
    if cfg.columns_per_half % 4:
        raise ValueError(f"columns_per_half = {cfg.columns_per_half}; LEARN copies its steps "
                         "into row layout word by word (allowed: a multiple of 4)")
    return g


def learn_layout(cfg: ChipConfig) -> dict[str, int]:
    """LEARN's data-memory vectors (indices of ``VECTOR_WORDS``-word vectors), as
    its ``.equ`` lines compute them: ``target``, ``mask`` (``ADC_CHUNKS`` each, neuron
    ``n`` in 8-bit lane ``n % LANES_B`` of vector ``n // LANES_B``), ``base``,
    ``peak``, ``delta`` (working space), ``rowd`` (``HALVES * ROW_CHUNKS`` step
    vectors in row layout) and ``end`` (the first vector not used)."""
    g = chip_geometry(cfg)
    vw, ac = g.vector_words, g.adc_chunks
    target = (LEARN_ROW_LIST + cfg.n_halves * cfg.rows_per_half + vw - 1) // vw
    lay = {"target": target, "mask": target + ac, "base": target + 2 * ac,
           "peak": target + 3 * ac, "delta": target + 4 * ac, "rowd": target + 5 * ac + 1}
    lay["end"] = lay["rowd"] + cfg.n_halves * g.row_chunks
    return lay


def _lane_vector_writes(g: PpuGeometry, first_vector: int, lanes: list[int]) -> list:
    """(word, value) writes of ``lanes`` (8-bit) as consecutive vectors from ``first_vector``."""
    n = g.lanes(8)
    lanes = list(lanes) + [0] * (-len(lanes) % n)
    writes = []
    for k in range(len(lanes) // n):
        vec = pack_array(lanes[k * n:(k + 1) * n], 8, wrap=True)
        base = (first_vector + k) * g.vector_words
        writes += [(base + j, w) for j, w in enumerate(_vector_words(g, vec))]
    return writes


def learn_rows(cfg: ChipConfig, rows) -> list[tuple[int, int]]:
    """The plastic rows as a checked list of (half, row)."""
    out = []
    for item in rows:
        try:
            h, r = (int(x) for x in item)
        except (TypeError, ValueError):
            raise ValueError(f"plastic row {item!r}; allowed: (half, row) pairs") from None
        if not (0 <= h < cfg.n_halves and 0 <= r < cfg.rows_per_half):
            raise ValueError(f"plastic row (half {h}, row {r}); allowed: half 0.."
                             f"{cfg.n_halves - 1}, row 0..{cfg.rows_per_half - 1}")
        if (h, r) in out:
            raise ValueError(f"plastic row (half {h}, row {r}) is listed twice")
        out.append((h, r))
    return out


def _learn_neurons(cfg: ChipConfig, neurons) -> np.ndarray:
    """Bool mask [n_neurons] of the plastic neurons (None: all)."""
    mask = np.zeros(cfg.n_neurons, dtype=bool)
    if neurons is None:
        mask[:] = True
        return mask
    idx = np.asarray(list(neurons), dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= cfg.n_neurons)]
    if bad.size:
        raise ValueError(f"neuron {int(bad[0])}; allowed: 0..{cfg.n_neurons - 1}")
    mask[idx] = True
    return mask


def _learn_target(cfg: ChipConfig, target) -> np.ndarray:
    t = np.broadcast_to(np.asarray(target, dtype=np.int64), (cfg.n_neurons,)) \
        if np.ndim(target) == 0 else np.asarray(target, dtype=np.int64)
    if t.shape != (cfg.n_neurons,):
        raise ValueError(f"target has shape {t.shape}; allowed: a scalar or "
                         f"[{cfg.n_neurons}] (one per neuron)")
    hi = (1 << cfg.adc_bits) - 1
    if t.min() < 0 or t.max() > hi:
        raise ValueError(f"target range {t.min()}..{t.max()} ADC codes; allowed: 0..{hi}")
    return t


def learn_dmem(cfg: ChipConfig, n_steps: int, rows, target, *, gain: int = 8,
               max_step: int = 4, neurons=None, drain: int | None = None
               ) -> list[tuple[int, int]]:
    """(dmem word, value) writes for LEARN: runs of ``n_steps`` analog steps
    (``L = live_cycles(cfg, n_steps)``), plastic ``rows`` ((half, row) pairs),
    response ``target`` in ADC codes (a scalar or one per neuron), ``gain`` G
    (0..255; the step is ``(|error| * G) >> 4``), ``max_step`` D (0..127),
    plastic ``neurons`` (indices; None: all), ``drain`` cycles to wait after
    ``time >= L`` before the first row write (at least DRAIN_CYCLES)."""
    g = _learn_check_config(cfg)
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps = {n_steps!r}; allowed: an integer >= 1")
    drain = DRAIN_CYCLES if drain is None else drain
    if not isinstance(drain, (int, np.integer)) or not DRAIN_CYCLES <= drain < 1 << 31:
        raise ValueError(f"drain = {drain!r} cycles; allowed: {DRAIN_CYCLES}..2**31-1 (the "
                         "run's drain must pass before a row write)")
    for name, v, hi in (("gain", gain, 255), ("max_step", max_step, 127)):
        if not isinstance(v, (int, np.integer)) or not 0 <= v <= hi:
            raise ValueError(f"{name} = {v!r}; allowed: an integer 0..{hi}")
    rows = learn_rows(cfg, rows)
    t = _learn_target(cfg, target)
    mask = _learn_neurons(cfg, neurons)
    lay = learn_layout(cfg)
    writes = [(LEARN_L, live_cycles(cfg, int(n_steps))), (LEARN_DRAIN, int(drain)),
              (LEARN_GAIN, int(gain)), (LEARN_MAX_STEP, int(max_step)),
              (LEARN_N_ROWS, len(rows))]
    writes += [(LEARN_ROW_LIST + i, g.row_address(h, r, 0)) for i, (h, r) in enumerate(rows)]
    writes += _lane_vector_writes(g, lay["target"], [int(x) for x in t])
    writes += _lane_vector_writes(g, lay["mask"], [0xFF if m else 0 for m in mask])
    return writes


def learn_numpy(cfg: ChipConfig, weights: np.ndarray, codes: np.ndarray, rows, target, *,
                gain: int = 8, max_step: int = 4, neurons=None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What one LEARN run does, in numpy: ``codes`` [samples, n_neurons] the trial's
    ADC samples (at least one), ``weights`` [halves, rows, columns].  Returns
    (response [n], step [n], new weights)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != cfg.n_neurons or len(codes) < 1:
        raise ValueError(f"codes has shape {codes.shape}; allowed: [samples >= 1, "
                         f"{cfg.n_neurons}]")
    t = _learn_target(cfg, target)
    mask = _learn_neurons(cfg, neurons)
    r = codes.max(axis=0) - codes[0]
    e = t - r
    mag = np.minimum(np.minimum((np.abs(e) * gain) >> LEARN_GAIN_SHIFT, 255), max_step)
    d = np.where(mask, np.sign(e) * mag, 0)
    out = np.array(weights, dtype=np.int64, copy=True)
    C = cfg.columns_per_half
    for h, row in learn_rows(cfg, rows):
        out[h, row] = np.clip(out[h, row] + d[h * C:(h + 1) * C], 0, cfg.weight_max)
    return r, d, out


def learn_decode(cfg: ChipConfig, out: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(response [n], step [n]) from one LEARN run's streamed vectors (response
    and step of ADC chunk 0, of chunk 1, ...); the step sign-extended."""
    g = chip_geometry(cfg)
    k = g.adc_chunks
    if len(out) != 2 * k:
        raise ValueError(f"{len(out)} streamed vectors; LEARN streams 2 x ADC_CHUNKS = {2 * k} "
                         "per run (none when the run took no ADC sample)")
    n = g.lanes(8)
    r, d = [], []
    for j in range(k):
        r += unpack_array(int(out[2 * j]), 8, n)
        d += [x - 256 if x >= 128 else x for x in unpack_array(int(out[2 * j + 1]), 8, n)]
    return (np.asarray(r[:cfg.n_neurons], dtype=np.int64),
            np.asarray(d[:cfg.n_neurons], dtype=np.int64))


def learn_cycles(cfg: ChipConfig, n_samples: int, n_rows: int, *, wait_polls: int = 0,
                 drain_spins: int = 0) -> int:
    """LEARN's cycle count for a trial of ``n_samples`` >= 1 ADC samples and
    ``n_rows`` plastic rows, when ``wait_polls`` polls (4 cycles each) found
    neither a new sample nor ``time >= L`` and the drain check looped
    ``drain_spins`` times (2 cycles each).  On ``mini`` at ADC period 8 the PPU
    (7 + 10 x ADC_CHUNKS cycles per sample) falls behind the ADC after sample 0:
    one wait poll, no drain spin."""
    g = _learn_check_config(cfg)
    if n_samples < 1:
        raise ValueError(f"n_samples = {n_samples}; allowed: >= 1 (without a sample LEARN "
                         "measures nothing and halts)")
    k, rc, vw = g.adc_chunks, g.row_chunks, g.vector_words
    head = 4
    measure = n_samples * (3 + 2 + 2) + k * (9 + 10 * (n_samples - 1)) + 5
    rule = 11 + 22 * k
    copy = 3 + cfg.n_halves * (4 + rc * (1 + 7 * vw + 5) + 3)
    drain = 3 + 2 + 1
    rows = 8 + n_rows * (5 + 13 * rc + 2)
    return head + 4 * wait_polls + measure + rule + copy + drain + 2 * drain_spins + rows + 1
