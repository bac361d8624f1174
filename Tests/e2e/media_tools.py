"""Shared by the media tests: how ffmpeg pushes a test stream (as the README shows)."""


def ffmpeg_push_command(video_port, audio_port, *, gop=120, host="127.0.0.1", duration=None):
    """ffmpeg testsrc H.264 (Constrained Baseline, 30 fps, one IDR every `gop` frames) and a
    440 Hz sine as Opus, each as RTP to its ingest port, in real time. A port of None leaves
    that track out (a video-only or audio-only stream)."""
    limit = ["-t", str(duration)] if duration else []
    inputs, outputs = [], []
    if video_port is not None:
        inputs += ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"]
        outputs += [
            "-map", f"{len(inputs) // 4 - 1}:v", "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-g", str(gop), "-bsf:v", "h264_mp4toannexb", "-payload_type", "96",
            "-f", "rtp", f"rtp://{host}:{video_port}?pkt_size=1200",
        ]
    if audio_port is not None:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        outputs += [
            "-map", f"{len(inputs) // 4 - 1}:a", "-c:a", "libopus", "-payload_type", "111",
            "-f", "rtp", f"rtp://{host}:{audio_port}?pkt_size=1200",
        ]
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", *inputs, *limit, *outputs]
