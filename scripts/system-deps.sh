#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use (ffmpeg for the baseline,
# mosquitto and its clients for the MQTT sink tests, GStreamer's RTSP server for the live tests and avfuse bench
# live, headless Chromium and its WebDriver for the report and live-view page tests, promtool for the metrics tests).
# Does nothing when they are already there.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v mosquitto >/dev/null && [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)  # a real subscriber (MQTT sink tests)
command -v promtool >/dev/null || need+=(prometheus)  # promtool check metrics (the --metrics-port page)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
  || need+=(python3-gi gir1.2-gst-rtsp-server-1.0)
command -v gst-inspect-1.0 >/dev/null || need+=(gstreamer1.0-tools)
command -v rtsp-server-perl >/dev/null || need+=(rtsp-server-perl)  # a UDP-only RTSP server (transport tests)
gst-inspect-1.0 x264enc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-ugly)
gst-inspect-1.0 rtph264pay >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 avenc_aac >/dev/null 2>&1 || need+=(gstreamer1.0-libav)
gst-inspect-1.0 h264parse >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
