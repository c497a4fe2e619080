#!/usr/bin/python3
"""A real RTSP server on this machine, for trying `edgeseg stream --rtsp` without a camera (and for its tests).

GStreamer's RTSP server (gst-rtsp-server) serves a moving test picture, H.264 over RTP, at
rtsp://ADDRESS:PORT/MOUNT. It runs under the *system* Python, which has the GObject bindings:

    apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \\
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
    /usr/bin/python3 tools/rtsp_server.py --port 8554 --mount front &
    edgeseg stream --rtsp front=rtsp://127.0.0.1:8554/front --max-frames 100

It prints one line, `ready rtsp://...`, once it listens; kill it (SIGTERM or SIGKILL) to take the "camera"
away, start it again on the same port to bring it back. It imports nothing from edgeseg.
"""

import argparse
import signal
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--address", default="127.0.0.1", help="listen address (default: loopback only)")
    parser.add_argument("--mount", default="cam", help="the URL's path: rtsp://ADDRESS:PORT/MOUNT")
    parser.add_argument("--size", default="360x480", help="HEIGHTxWIDTH of the picture (default 360x480)")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, snow, ...)")
    args = parser.parse_args()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"error: GStreamer's RTSP server bindings are missing ({exc})\n  fix: apt-get install python3-gi "
              "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly, "
              "and run this with /usr/bin/python3", file=sys.stderr)
        return 2
    height, width = (int(v) for v in args.size.lower().split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # A key frame every second, and SPS/PPS with it, so that a client joining (or rejoining) decodes at once.
    factory.set_launch(
        f"( videotestsrc is-live=true pattern={args.pattern} ! video/x-raw,width={width},height={height},"
        f"framerate={args.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)  # every client sees the same stream, as with a camera
    server.get_mount_points().add_factory(f"/{args.mount}", factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on {args.address}:{args.port}\n  fix: pick a free --port", file=sys.stderr)
        return 2
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # the loop runs in C: GLib delivers the signal to it
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: loop.quit() or False)
    print(f"ready rtsp://{args.address}:{args.port}/{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
