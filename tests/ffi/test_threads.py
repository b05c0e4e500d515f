"""A codec closed from another thread while it works: an error, never a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, threading, time
    from xdelta_ffi import CodecStateError, Decoder, Encoder, encode

    source = os.urandom(8 << 20)
    target = bytearray(source)
    for i in range(0, len(target), 4096):
        target[i] ^= 1
    target = bytes(target)
    delta = encode(source, target)
    errors = []
    for round_ in range(40):
        for make, data in ((lambda: Encoder(source), target), (lambda: Decoder(source), delta)):
            codec = make()
            def work():
                try:
                    for _ in range(3):
                        for piece in codec.stream(data):
                            pass
                except CodecStateError as exc:
                    errors.append(exc)
                except Exception as exc:  # any other codec error is fine too, not a crash
                    errors.append(exc)
            worker = threading.Thread(target=work)
            worker.start()
            time.sleep(0.0005 * (round_ % 8))
            codec.close()
            worker.join()
    print("survived", len(errors))
    """
)


def test_close_from_another_thread_while_streaming_never_crashes() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "survived" in result.stdout
