"""Spoken digits from espeak-ng: the words, the speakers and the draws of one
utterance (docs/speech.md).

20 classes in SHD's order: 0-9 the English digits "zero" .. "nine", 10-19 the
German "null" .. "neun".  A *speaker* is one espeak-ng voice variant (``+m3``,
``+f2``, ``+klatt4``, ...: formant and voice-quality settings); training and
test speakers are disjoint (:data:`TRAIN_SPEAKERS`, :data:`TEST_SPEAKERS`).
Every utterance draws, from its own seed (``[seed, split, index]``):

- the accent: one of espeak-ng's English voices for English words (British,
  American, Scottish, Lancaster, West Midlands, received pronunciation,
  Caribbean, New York City), its German voice for German words;
- the speaker (a variant of its split), pitch ``-p`` 25..75 (espeak-ng's
  default 50), rate ``-s`` 110..210 words per minute (default 175),
  amplitude ``-a`` 50..150 (default 100);
- silence before (50..300 ms) and after (50..300 ms) the word, the track then
  padded to a whole multiple of 100 ms (SHD's recordings, too, start and end
  in silence, and lauscher's Hann window spans the whole track);
- white noise at an SNR drawn uniformly in 5..40 dB (speech power over the
  word's own samples), over the whole track.

espeak-ng's word gap (``-g``) separates words; a single digit has none, so it
is not drawn.  The amplitude varies a speaker's loudness, but the cochlea's
RMS normalisation (lauscher's, to 0.3) removes it except through the 16-bit
quantisation of quiet speech.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import asdict, dataclass

import numpy as np

ENGLISH = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GERMAN = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
#: class k's word and its language (SHD's label order)
WORDS = tuple((w, "en") for w in ENGLISH) + tuple((w, "de") for w in GERMAN)
#: SHD's key names (its extra/keys)
KEYS = tuple(f"english-{w}" for w in ENGLISH) + tuple(f"german-{w}" for w in GERMAN)
#: espeak-ng voices (accents) per language
VOICES = {"en": ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                 "en-gb-x-rp", "en-029", "en-us-nyc"),
          "de": ("de",)}
#: the speakers (espeak-ng voice variants) of each split: disjoint
TRAIN_SPEAKERS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2",
                  "klatt3", "klatt5", "adam", "Andy", "john", "linda", "max", "robert", "steph")
TEST_SPEAKERS = ("m7", "f4", "klatt4", "edward", "Annie")
SPLITS = {"train": (0, TRAIN_SPEAKERS), "test": (1, TEST_SPEAKERS)}
#: ranges of the per-utterance draws (uniform)
PITCH = (25, 75)
RATE_WPM = (110, 210)
AMPLITUDE = (50, 150)
SILENCE_S = (0.05, 0.30)
SNR_DB = (5.0, 40.0)
#: tracks are padded to a whole number of these (the membrane's transfer functions
#: are computed once per track length)
PAD_S = 0.1
SAMPLE_RATE = 22050


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Utterance:
    """The draws of one utterance (everything needed to make it again)."""

    split: str
    index: int
    label: int
    speaker: str
    speaker_id: int
    voice: str
    pitch: int
    rate: int
    amplitude: int
    silence_before_s: float
    silence_after_s: float
    snr_db: float
    seed: tuple[int, int, int]

    @property
    def word(self) -> str:
        return WORDS[self.label][0]

    def espeak_args(self) -> list[str]:
        return ["-v", f"{self.voice}+{self.speaker}", "-p", str(self.pitch),
                "-s", str(self.rate), "-a", str(self.amplitude)]

    def record(self) -> dict:
        d = asdict(self)
        d["word"] = self.word
        d["seed"] = list(self.seed)
        return d


def speaker_ids() -> dict[str, int]:
    """Speaker name -> id (train speakers first, then test), as SHD's extra/speaker."""
    return {s: i for i, s in enumerate(TRAIN_SPEAKERS + TEST_SPEAKERS)}


def draw(split: str, index: int, seed: int) -> Utterance:
    """Utterance ``index`` of ``split`` (class ``index % 20``; the rest drawn)."""
    if split not in SPLITS:
        raise ValueError(f"split = {split!r}; allowed: {', '.join(SPLITS)}")
    sid, speakers = SPLITS[split]
    key = (int(seed), sid, int(index))
    rng = np.random.default_rng(key)
    label = index % len(WORDS)
    lang = WORDS[label][1]
    speaker = speakers[int(rng.integers(len(speakers)))]
    voice = VOICES[lang][int(rng.integers(len(VOICES[lang])))]
    return Utterance(
        split=split, index=int(index), label=label, speaker=speaker,
        speaker_id=speaker_ids()[speaker], voice=voice,
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        amplitude=int(rng.integers(AMPLITUDE[0], AMPLITUDE[1] + 1)),
        silence_before_s=float(rng.uniform(*SILENCE_S)),
        silence_after_s=float(rng.uniform(*SILENCE_S)),
        snr_db=float(rng.uniform(*SNR_DB)), seed=key)


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("espeak-ng not found on PATH; install Debian's espeak-ng "
                          "(make system-deps, or apt-get install espeak-ng)")
    return exe


def espeak_version() -> str:
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True,
                         check=False)
    return out.stdout.split("Data at")[0].strip()


def speak(u: Utterance) -> np.ndarray:
    """espeak-ng's waveform of ``u`` (float64 in [-1, 1), 22,050 Hz), without silence
    or noise."""
    cmd = [espeak_binary(), *u.espeak_args(), "--stdout", u.word]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 44:
        raise SpeechError(f"espeak-ng failed ({' '.join(cmd)}): exit {res.returncode}, "
                          f"{res.stderr.decode(errors='replace').strip()[:200]}")
    with wave.open(io.BytesIO(res.stdout)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != SAMPLE_RATE:
            raise SpeechError(f"espeak-ng wrote {w.getnchannels()} channel(s) of "
                              f"{8 * w.getsampwidth()} bits at {w.getframerate()} Hz; "
                              f"expected mono 16-bit at {SAMPLE_RATE} Hz")
        x = np.frombuffer(w.readframes(-1), dtype="<i2")
    if len(x) == 0 or not np.any(x):
        raise SpeechError(f"espeak-ng produced silence for {' '.join(cmd)}")
    return x.astype(np.float64) / 32768.0


def track(u: Utterance, speech: np.ndarray) -> np.ndarray:
    """The utterance's track: silence, the word, silence, padded to a multiple of
    :data:`PAD_S`, plus white noise at ``u.snr_db`` (its own generator)."""
    fs = SAMPLE_RATE
    before = int(round(u.silence_before_s * fs))
    after = int(round(u.silence_after_s * fs))
    n = before + len(speech) + after
    pad = int(round(PAD_S * fs))
    n = -(-n // pad) * pad
    x = np.zeros(n)
    x[before:before + len(speech)] = speech
    power = float(np.mean(speech ** 2))
    rng = np.random.default_rng((*u.seed, 1))
    x += rng.standard_normal(n) * np.sqrt(power / 10 ** (u.snr_db / 10))
    return x


def utterance_track(split: str, index: int, seed: int) -> tuple[Utterance, np.ndarray]:
    u = draw(split, index, seed)
    return u, track(u, speak(u))
