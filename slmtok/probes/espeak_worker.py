"""The espeak-ng worker process behind ``slmtok.probes.espeak.Engine`` (run as ``python -m``).

espeak-ng carries state from one utterance to the next (wave-generator phase, flutter index, echo
buffer, libc ``rand()`` for breath noise), so the same text would sound slightly different depending on
what was spoken before. This process loads and initialises the library once, then forks a child for
every request: each child starts from the same freshly initialised state, seeds libc ``rand()`` with 0,
speaks, sends back its samples and events and exits. The same request therefore always gives the same
samples, whatever came before and in whichever process.

Protocol (binary, stdin/stdout): first a line of JSON ``{"rate": Hz, "version": str}`` or ``{"error":
str}``. Then for each request line (JSON ``{"text", "voice", "phonemes", "rate", "pitch"}``) an 8-byte
little-endian length and that many bytes: a JSON line ``{"events": [[type, sample, name], ...],
"samples": n}`` or ``{"error": str}``, followed by ``n`` int16 little-endian samples.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import struct
import sys

EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8, _PHONEMES, _POS_CHARACTER = 1, 0x100, 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT, speak_lib.h API revision 12
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at espeak-ng's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _speak(lib, request: dict) -> bytes:
    """In the forked child: speak one request, return the reply bytes (header line + samples)."""
    chunks: list[bytes] = []
    events: list[list] = []

    def on_audio(wav, n, event_list) -> int:
        if wav and n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while event_list[i].type != EVENT_LIST_TERMINATED:
            event = event_list[i]
            if event.type == EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0")[0].decode("utf-8", "replace")
                events.append([EVENT_PHONEME, event.sample, name])
            elif event.type == EVENT_WORD:
                events.append([EVENT_WORD, event.sample, ""])
            i += 1
        return 0

    callback = _CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    ctypes.CDLL(None).srand(0)
    if lib.espeak_SetVoiceByName(str(request["voice"]).encode()) != 0:
        message = f"espeak-ng has no voice {request['voice']!r} (see: espeak-ng --voices=en)"
        return json.dumps({"error": message, "voice": True}).encode()
    for parameter, value in (
        (_RATE, request["rate"]),
        (_VOLUME, 100),
        (_PITCH, request["pitch"]),
        (_RANGE, 50),
        (_WORDGAP, 0),
    ):
        lib.espeak_SetParameter(parameter, int(value), 0)
    data = str(request["text"]).encode("utf-8")
    flags = _CHARS_UTF8 | (_PHONEMES if request["phonemes"] else 0)
    code = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
    lib.espeak_Synchronize()
    if code != 0:
        return json.dumps({"error": f"espeak-ng failed (code {code})"}).encode()
    audio = b"".join(chunks)
    if sys.byteorder != "little":
        import array

        swapped = array.array("h", audio)
        swapped.byteswap()
        audio = swapped.tobytes()
    header = json.dumps({"events": events, "samples": len(audio) // 2}).encode() + b"\n"
    return header + audio


def _send(stream, payload: bytes) -> None:
    stream.write(struct.pack("<Q", len(payload)))
    stream.write(payload)
    stream.flush()


def main() -> int:
    out = sys.stdout.buffer
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        out.write(
            b'{"error": "espeak-ng is not installed (libespeak-ng.so.1 not found): apt-get install espeak-ng"}\n'
        )
        out.flush()
        return 1
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    rate = int(lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS))
    if rate <= 0:
        out.write(b'{"error": "espeak-ng could not be initialised (is espeak-ng-data installed?)"}\n')
        out.flush()
        return 1
    version = (lib.espeak_Info(None) or b"unknown").decode()
    out.write(json.dumps({"rate": rate, "version": version}).encode() + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        request = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: fresh engine state inherited from the parent, used once
            os.close(read_end)
            try:
                payload = _speak(lib, request)
            except Exception as error:  # noqa: BLE001 - reported to the caller as one line
                payload = json.dumps({"error": f"espeak-ng worker: {error}"}).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view) :]
            os._exit(0)
        os.close(write_end)
        parts = []
        while chunk := os.read(read_end, 1 << 20):
            parts.append(chunk)
        os.close(read_end)
        os.waitpid(pid, 0)
        _send(out, b"".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
