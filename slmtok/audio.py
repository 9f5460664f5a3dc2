"""Audio in and out: validation, down-mixing, band-limited resampling, file reading and atomic writing.

``prepare`` turns whatever a user passes to ``encode`` into a zero-padded ``[B, C, T]`` batch at the
tokenizer's rate and channel count. Each item is converted on its own, at its own length, so a padded
batch gives every item exactly what it gets alone.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slmtok.atomic import atomic_path
from slmtok.errors import AudioError, OutputError, SlmtokWarning
from slmtok.types import Audio, InputInfo

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 64


@dataclass
class PreparedAudio:
    """Audio ready for a tokenizer: ``wav`` float32 ``[B, C, T]``, ``lengths`` ``[B]`` samples."""

    wav: torch.Tensor
    lengths: torch.Tensor
    info: InputInfo


def as_batch(wav: torch.Tensor | np.ndarray, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and reshape user audio to float32 ``[B, C, T]`` with ``lengths`` ``[B]``.

    Accepts ``[T]``, ``[C, T]`` or ``[B, C, T]`` tensors or arrays; integer PCM is scaled to [-1, 1).
    Samples past each length are ignored. Raises ``AudioError`` for empty audio, NaN/Inf samples in the
    valid region, bad shapes or bad lengths.
    """
    if isinstance(wav, np.ndarray):
        if wav.dtype.kind in "iu":
            scale = float(2 ** (8 * wav.dtype.itemsize - 1))
            wav = wav.astype(np.float32) / scale
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"audio must be a torch tensor or numpy array, got {type(wav).__name__}")
    if not (wav.is_floating_point() or wav.dtype in (torch.int16, torch.int32)):
        raise AudioError(f"audio must be float or int16/int32 PCM, got {wav.dtype}")
    if wav.dtype in (torch.int16, torch.int32):
        wav = wav.float() / float(2 ** (8 * wav.element_size() - 1))
    wav = wav.float()
    if wav.ndim == 1:
        wav = wav[None, None]
    elif wav.ndim == 2:
        wav = wav[None]
    elif wav.ndim != 3:
        raise AudioError(f"audio must be [T], [C, T] or [B, C, T]; got {wav.ndim} dimensions")
    batch, channels, width = wav.shape
    if batch == 0:
        raise AudioError("empty batch: no audio items")
    if channels > MAX_CHANNELS and width <= MAX_CHANNELS:
        raise AudioError(f"audio shaped {tuple(wav.shape)} looks like [T, C]; pass channels first ([C, T])")
    if channels == 0 or channels > MAX_CHANNELS:
        raise AudioError(f"audio has {channels} channels; expected 1 to {MAX_CHANNELS}")
    if lengths is None:
        lengths = torch.full((batch,), width, dtype=torch.long)
    else:
        lengths = torch.as_tensor(lengths, dtype=torch.long).flatten().cpu()
        if lengths.shape != (batch,):
            raise AudioError(f"lengths must have one entry per item ({batch}), got {lengths.numel()}")
        if bool((lengths > width).any()) or bool((lengths < 0).any()):
            raise AudioError(f"lengths must lie in [0, {width}] samples, got {lengths.tolist()}")
    for i in range(batch):
        n = int(lengths[i])
        if n == 0:
            raise AudioError(
                f"empty audio: item {i} has 0 samples" if batch > 1 else "empty audio: 0 samples"
            )
        if not bool(torch.isfinite(wav[i, :, :n]).all()):
            where = f"item {i} " if batch > 1 else ""
            raise AudioError(f"audio {where}contains NaN or Inf samples")
    return wav, lengths


def check_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if isinstance(sample_rate, float) and sample_rate.is_integer():
            sample_rate = int(sample_rate)
        else:
            raise AudioError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample_rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return int(sample_rate)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``[C, T]`` -> ``[channels, T]``: mean down-mix to mono, mono duplicated, else an error."""
    have = x.shape[0]
    if have == channels:
        return x
    if channels == 1:
        return x.mean(dim=0, keepdim=True)
    if have == 1:
        return x.expand(channels, -1).contiguous()
    raise AudioError(f"cannot map {have} channels to {channels}")


def resample(x: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling of ``[..., T]`` from ``orig_rate`` to ``new_rate`` Hz.

    Kaiser-windowed sinc with librosa's "kaiser_best" settings (64 zero crossings, roll-off 0.9475,
    beta 14.77): flat to 95 % of the lower Nyquist frequency, with strong stop-band rejection. The output
    has ``ceil(T * new_rate / orig_rate)`` samples.
    """
    if orig_rate == new_rate:
        return x
    import torchaudio.functional as AF

    return AF.resample(
        x,
        orig_rate,
        new_rate,
        lowpass_filter_width=64,
        rolloff=0.9475937167399596,
        resampling_method="sinc_interp_kaiser",
        beta=14.769656459379492,
    )


def prepare(
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    lengths=None,
    *,
    target_rate: int,
    target_channels: int,
    device: torch.device | str = "cpu",
) -> PreparedAudio:
    """Validate, down-mix and resample user audio for a tokenizer, item by item.

    Args:
        wav: ``[T]``, ``[C, T]`` or ``[B, C, T]`` audio at ``sample_rate`` Hz.
        lengths: valid samples per item (``[B]``), or ``None`` for full width.
        target_rate: the tokenizer's sample rate (Hz).
        target_channels: the tokenizer's channel count.

    Returns:
        ``PreparedAudio`` with ``wav`` ``[B, target_channels, T']`` on ``device`` and the conversion record.
    """
    rate = check_sample_rate(sample_rate)
    batch, lens = as_batch(wav, lengths)
    if getattr(wav, "ndim", 0) == 2 and batch.shape[1] > 1:
        _warn_channels_assumed(batch.shape[1], batch.shape[2], target_channels)
    items = []
    for i in range(batch.shape[0]):
        x = batch[i, :, : int(lens[i])].to(device)
        x = convert_channels(x, target_channels)
        items.append(resample(x, rate, target_rate))
    new_lengths = torch.tensor([x.shape[-1] for x in items], dtype=torch.long)
    if len(items) == 1:  # one (possibly hour-long) item: no padded copy of it
        out = items[0][None]
    else:
        out = torch.zeros(len(items), target_channels, int(new_lengths.max()), device=device)
        for i, x in enumerate(items):
            out[i, :, : x.shape[-1]] = x
    steps = []
    if batch.shape[1] != target_channels:
        how = "mean" if target_channels == 1 else "duplicated"
        steps.append(f"channels {batch.shape[1]} -> {target_channels} ({how})")
    if rate != target_rate:
        steps.append(f"resampled {rate} Hz -> {target_rate} Hz (Kaiser sinc)")
    info = InputInfo(rate, batch.shape[1], tuple(int(n) for n in lens), tuple(steps))
    return PreparedAudio(out, new_lengths.to(device), info)


def _warn_channels_assumed(channels: int, width: int, target_channels: int) -> None:
    """One ``SlmtokWarning`` line for a ``[C, T]`` input with ``C > 1``: it could be ``C`` channels of
    one item or ``C`` mono items; say which was assumed and how to pass the other.

    Not raised when the audio comes from slmtok itself (a file read by ``read_audio`` is one item's
    channels, never a batch): only a caller outside the package gets it, pointed at its own line.
    """
    level = _caller_stacklevel()
    if level is None:
        return
    if target_channels == channels:
        done = "kept as is"
    elif target_channels == 1:
        done = "down-mixed to mono (mean)"
    else:
        done = f"mapped to the tokenizer's {target_channels} channels"
    warnings.warn(
        f"audio shaped [{channels}, {width}] was treated as {channels} channels of one item, {done}; "
        f"for a batch of {channels} mono items pass [{channels}, 1, {width}]",
        SlmtokWarning,
        stacklevel=level,
    )


_PASS_THROUGH = ("slmtok.audio", "slmtok.tokenizer")


def _caller_stacklevel() -> int | None:
    """``stacklevel`` of the first frame past ``prepare``/``Tokenizer.encode`` and torch's wrappers
    (``torch.inference_mode``): the caller's line; ``None`` when that caller is slmtok's own code."""
    level, frame = 2, sys._getframe(2)  # 1: _warn_channels_assumed's caller (prepare)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module not in _PASS_THROUGH and module != "torch" and not module.startswith("torch."):
            return None if module == "slmtok" or module.startswith("slmtok.") else level
        level, frame = level + 1, frame.f_back
    return level


def match_input(audio: Audio, info: InputInfo) -> Audio:
    """Decoded audio back in the format of the input it was encoded from, item by item.

    Each item is resampled from ``audio.sample_rate`` to ``info.sample_rate`` with the same band-limited
    resampler ``prepare`` uses, mapped to ``info.channels`` channels (mono duplicated to every channel,
    several channels averaged to mono; ``AudioError`` for other counts), and trimmed or zero-padded to
    exactly ``info.lengths[i]`` samples (what a tokenizer's frame grid added or cut is undone). A
    record more than 1 s (plus 1 %) longer than the decoded audio is refused (``AudioError``), so a
    forged record cannot make it allocate more than the audio holds.

    Args:
        audio: decoded audio, ``wav`` ``[B, C, T]`` at the tokenizer's rate, ``lengths`` ``[B]``.
        info: ``tokens.input`` of the tokens that were decoded (``B`` lengths).

    Returns:
        ``Audio`` with ``wav`` ``[B, info.channels, max(info.lengths)]`` at ``info.sample_rate`` Hz and
        ``lengths`` equal to ``info.lengths``.
    """
    if len(info.lengths) != audio.batch_size:
        raise AudioError(
            f"the input record has {len(info.lengths)} item(s) but the audio has {audio.batch_size}"
        )
    rate = check_sample_rate(info.sample_rate)
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(f"the input record has {info.channels} channels; expected 1 to {MAX_CHANNELS}")
    for i, n in enumerate(info.lengths):  # a record far longer than the audio is not this audio's
        have, want = int(audio.lengths[i]) / audio.sample_rate, n / rate
        if want > have + 1.0 + 0.01 * have:
            raise AudioError(
                f"item {i}: the input record says {want:.6g} s but the decoded audio is {have:.6g} s; "
                "it is not the record of this audio"
            )
    width = max(info.lengths, default=0)
    out = torch.zeros(audio.batch_size, info.channels, width, dtype=audio.wav.dtype, device=audio.wav.device)
    for i, n in enumerate(info.lengths):
        x = audio.item(i)
        if x.shape[-1] == 0:  # nothing decoded: silence of the recorded length
            continue
        if x.shape[0] > info.channels:  # fewer channels to resample: mix first, else resample first
            x = resample(convert_channels(x, info.channels), audio.sample_rate, rate)
        else:
            x = convert_channels(resample(x, audio.sample_rate, rate), info.channels)
        x = x[:, :n]
        out[i, :, : x.shape[-1]] = x
    return Audio(out, torch.tensor(info.lengths, dtype=torch.long), rate)


# ---------------------------------------------------------------------------------------------- files


def read_audio(
    path: str | os.PathLike, *, start: float = 0.0, duration: float | None = None
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 ``[C, T]`` and its sample rate (Hz).

    soundfile (libsndfile: wav, flac, ogg, mp3) first; PyAV (FFmpeg) for what it cannot read, such as
    G.722 or AAC. ``start`` and ``duration`` are in seconds. Raises ``AudioError`` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"no such file: {path}")
    if path.is_dir():
        raise AudioError(f"is a folder, not an audio file: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"empty audio: {path} is an empty file")
    try:
        import soundfile as sf

        info = sf.info(str(path))
        first = int(round(start * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, rate = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.T.copy())
    except Exception as sf_error:  # noqa: BLE001 - fall back to FFmpeg, report both if it fails too
        try:
            wav, rate = _read_with_av(path)
        except Exception:  # noqa: BLE001
            reason = str(sf_error).splitlines()[0] if str(sf_error) else type(sf_error).__name__
            raise AudioError(f"not a readable audio file: {path} ({reason})") from None
        first = int(round(start * rate))
        last = None if duration is None else first + int(round(duration * rate))
        wav = wav[:, first:last]
    if wav.shape[-1] == 0:
        raise AudioError(f"empty audio: {path} has 0 samples")
    return wav, int(rate)


def _read_with_av(path: Path) -> tuple[torch.Tensor, int]:
    import av

    fmt = "g722" if path.suffix.lower() == ".g722" else None
    with av.open(str(path), format=fmt) as container:
        stream = container.streams.audio[0]
        chunks = []
        rate = stream.rate or stream.codec_context.sample_rate
        for frame in container.decode(audio=0):
            array = frame.to_ndarray()
            if array.dtype.kind in "iu":
                array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
            channels = len(frame.layout.channels)
            array = array.reshape(channels, -1) if frame.format.is_planar else array.reshape(-1, channels).T
            chunks.append(array.astype(np.float32))
            rate = frame.sample_rate or rate
    if not chunks:
        raise AudioError(f"no audio frames in {path}")
    return torch.from_numpy(np.concatenate(chunks, axis=1)), int(rate)


def write_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> Path:
    """Atomically write ``wav`` ``[C, T]`` (or ``[T]``, samples in [-1, 1]) at ``sample_rate`` Hz to
    ``path`` (format from the extension: 16-bit PCM wav/flac, Vorbis ogg).

    The file is encoded in memory, written to a temporary file in the same folder and renamed into
    place, so no partial file is ever left. A write the system refuses (full disk, file too large, a
    name too long or not encodable, no permission) raises ``OutputError`` naming ``path``.
    """
    import soundfile as sf

    path = Path(path)
    if wav.ndim == 1:
        wav = wav[None]
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(
            f"cannot write {path.suffix or 'files without an extension'}: use .wav, .flac or .ogg"
        )
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    data = wav.detach().float().cpu().clamp(-1.0, 1.0).numpy().T
    # libsndfile writing to a file reports a failed write as a bare error code; in memory it cannot
    # fail, and Python's own write then says what went wrong (errno)
    encoded = io.BytesIO()
    sf.write(encoded, data, int(sample_rate), format=fmt, subtype=subtype)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            file.write(encoded.getbuffer())
    except OutputError as error:  # from atomic_path, which may name only the folder
        if str(path) in str(error):
            raise
        raise OutputError(f"cannot write {path} ({error})") from None
    except (OSError, UnicodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else None
        if isinstance(error, UnicodeError):
            reason = "the name cannot be encoded for the filesystem"
        raise OutputError(f"cannot write {path}: {reason or error}") from None
    return path
